//! PartiQL for DynamoDB: the statements `ExecuteStatement`, `BatchExecuteStatement` and
//! `ExecuteTransaction` accept (`SELECT`, `INSERT`, `UPDATE`, `DELETE`), parsed into a small
//! tree ([`parse`]) and then bound to the request's `?` parameters ([`bind`]), which turns the
//! tree into the condition, update and value types of [`crate::dynamodb`], so the service
//! evaluates PartiQL with the same code as its expression parameters.
//!
//! What it deliberately is not: a general PartiQL engine. No joins, aggregates, sub-queries,
//! `EXISTS(SELECT ...)` or `LIKE`; those fail with AWS's "Statement wasn't well formed" or
//! "Unsupported" validation messages. Input is user text: the parser never panics (proptest
//! below) and bounds its nesting depth.

use crate::dynamodb::expr::{Action, Cmp, Cond, Operand, Path, PathElem, SetValue};
use crate::dynamodb::value::Item;
use crate::dynamodb::{AttrValue, Num};

/// AWS's prefix for every parse error.
const MALFORMED: &str = "Statement wasn't well formed, can't be processed";
/// How deep parentheses, lists and maps may nest before the parser gives up.
const MAX_DEPTH: usize = 64;

/// A value expression, before parameters are bound.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Path(Path),
    Str(String),
    Num(String),
    Bool(bool),
    Null,
    Missing,
    Param(usize),
    List(Vec<Expr>),
    Map(Vec<(String, Expr)>),
    Set(Vec<Expr>),
    Plus(Box<Expr>, Box<Expr>),
    Minus(Box<Expr>, Box<Expr>),
    /// A function call, name lower-cased: `list_append`, `set_add`, `set_delete`, `size`.
    Call(String, Vec<Expr>),
}

/// A WHERE clause, before parameters are bound.
#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    Cmp(Cmp, Expr, Expr),
    Between(Expr, Expr, Expr),
    In(Expr, Vec<Expr>),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    Not(Box<Pred>),
    /// `x IS [NOT] MISSING` (the flag: NOT).
    IsMissing(Expr, bool),
    /// `x IS [NOT] NULL`.
    IsNull(Expr, bool),
    /// `begins_with`, `contains`, `attribute_exists`, `attribute_not_exists`, `attribute_type`.
    Call(String, Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOp {
    Set(Path, Expr),
    Remove(Path),
}

/// `RETURNING` of UPDATE and DELETE: ALL or MODIFIED, OLD or NEW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Returning {
    pub all: bool,
    pub new: bool,
}

impl Returning {
    /// The `ReturnValues` word the same request would use.
    pub fn return_values(self) -> &'static str {
        match (self.all, self.new) {
            (true, false) => "ALL_OLD",
            (true, true) => "ALL_NEW",
            (false, false) => "UPDATED_OLD",
            (false, true) => "UPDATED_NEW",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Select {
        /// `None` for `*`.
        projection: Option<Vec<Path>>,
        table: String,
        index: Option<String>,
        filter: Option<Pred>,
        /// `ORDER BY path [ASC|DESC]`: the path and whether descending.
        order: Option<(Path, bool)>,
    },
    Insert {
        table: String,
        value: Expr,
    },
    Update {
        table: String,
        ops: Vec<UpdateOp>,
        filter: Pred,
        returning: Option<Returning>,
    },
    Delete {
        table: String,
        filter: Pred,
        returning: Option<Returning>,
    },
}

impl Statement {
    pub fn table(&self) -> &str {
        match self {
            Statement::Select { table, .. }
            | Statement::Insert { table, .. }
            | Statement::Update { table, .. }
            | Statement::Delete { table, .. } => table,
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self, Statement::Select { .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Quoted(String),
    Str(String),
    Num(String),
    Punct(&'static str),
    Bad(char),
    Eof,
}

/// The tokens, and for each whether it follows the one before with no space between (a bare
/// table name such as `my-table-1` lexes as several tokens glued together).
fn lex(src: &str) -> Result<(Vec<Tok>, Vec<bool>), String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut glued = Vec::new();
    let mut i = 0;
    let mut last_end = usize::MAX;
    while i < chars.len() {
        let start = i;
        if let Some(t) = lex_one(&chars, &mut i)? {
            glued.push(start == last_end);
            out.push(t);
            last_end = i;
        }
    }
    out.push(Tok::Eof);
    glued.push(false);
    Ok((out, glued))
}

/// One token at `at` (advanced past it), or `None` for space and comments.
fn lex_one(chars: &[char], at: &mut usize) -> Result<Option<Tok>, String> {
    let mut i = *at;
    let c = chars[i];
    let tok = if c.is_whitespace() {
        i += 1;
        None
    } else if c == '-' && chars.get(i + 1) == Some(&'-') {
        // A comment runs to the end of the line.
        while i < chars.len() && chars[i] != '\n' {
            i += 1;
        }
        None
    } else if c == '\'' || c == '"' {
        let mut text = String::new();
        i += 1;
        loop {
            match chars.get(i) {
                None => {
                    return Err(if c == '\'' {
                        "Unterminated string literal".into()
                    } else {
                        "Unterminated quoted identifier".into()
                    });
                }
                Some(&q) if q == c => {
                    if chars.get(i + 1) == Some(&c) {
                        text.push(c);
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                }
                Some(&other) => {
                    text.push(other);
                    i += 1;
                }
            }
        }
        Some(if c == '\'' {
            Tok::Str(text)
        } else {
            Tok::Quoted(text)
        })
    } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
    {
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
            i += 1;
        }
        if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
            let mut j = i + 1;
            if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                j += 1;
            }
            if j < chars.len() && chars[j].is_ascii_digit() {
                i = j;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
        Some(Tok::Num(chars[start..i].iter().collect()))
    } else if c.is_alphabetic() || c == '_' || c == '$' {
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
        {
            i += 1;
        }
        Some(Tok::Ident(chars[start..i].iter().collect()))
    } else {
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let p2 = match two.as_str() {
            "<<" => Some("<<"),
            ">>" => Some(">>"),
            "<=" => Some("<="),
            ">=" => Some(">="),
            "<>" => Some("<>"),
            "!=" => Some("<>"),
            _ => None,
        };
        if let Some(p) = p2 {
            i += 2;
            Some(Tok::Punct(p))
        } else {
            i += 1;
            Some(match c {
                '(' => Tok::Punct("("),
                ')' => Tok::Punct(")"),
                '[' => Tok::Punct("["),
                ']' => Tok::Punct("]"),
                '{' => Tok::Punct("{"),
                '}' => Tok::Punct("}"),
                ',' => Tok::Punct(","),
                '.' => Tok::Punct("."),
                ':' => Tok::Punct(":"),
                '?' => Tok::Punct("?"),
                '*' => Tok::Punct("*"),
                '+' => Tok::Punct("+"),
                '-' => Tok::Punct("-"),
                '=' => Tok::Punct("="),
                '<' => Tok::Punct("<"),
                '>' => Tok::Punct(">"),
                ';' => Tok::Punct(";"),
                other => Tok::Bad(other),
            })
        }
    };
    *at = i;
    Ok(tok)
}

const KEYWORDS: &[&str] = &[
    "select",
    "from",
    "where",
    "insert",
    "into",
    "value",
    "values",
    "update",
    "set",
    "remove",
    "delete",
    "and",
    "or",
    "not",
    "between",
    "in",
    "is",
    "missing",
    "null",
    "true",
    "false",
    "returning",
    "order",
    "by",
    "asc",
    "desc",
];

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

struct Parser {
    toks: Vec<Tok>,
    glued: Vec<bool>,
    pos: usize,
    params: usize,
    depth: usize,
}

type R<T> = Result<T, String>;

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).unwrap_or(&Tok::Eof)
    }

    fn peek_at(&self, n: usize) -> &Tok {
        self.toks.get(self.pos + n).unwrap_or(&Tok::Eof)
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn at_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.at_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> R<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("Expected {}", kw.to_ascii_uppercase())))
        }
    }

    fn at_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if self.at_punct(p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, p: &str) -> R<()> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("Expected {p}")))
        }
    }

    /// What AWS says about the token where parsing stopped.
    fn unexpected(&self, expected: &str) -> String {
        match self.peek() {
            Tok::Eof => "Unexpected end of statement".into(),
            Tok::Ident(w) if is_keyword(w) => format!("Unexpected keyword: {expected}"),
            Tok::Bad(c) => format!("Unexpected character: {c}"),
            _ => format!("Unexpected token: {expected}"),
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("Statement nesting is too deep".into());
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn name(&mut self) -> R<String> {
        match self.peek().clone() {
            Tok::Quoted(s) => {
                self.pos += 1;
                Ok(s)
            }
            Tok::Ident(s) if !is_keyword(&s) => {
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.unexpected("Expected identifier")),
        }
    }

    /// A table name: quoted, or bare and then possibly several glued tokens (`my-table-2`).
    fn table_name(&mut self) -> R<String> {
        let mut name = match self.peek().clone() {
            Tok::Quoted(s) => {
                self.pos += 1;
                return Ok(s);
            }
            Tok::Ident(s) if !is_keyword(&s) => s,
            Tok::Num(n) => n,
            _ => return Err(self.unexpected("Expected identifier")),
        };
        self.pos += 1;
        while self.glued.get(self.pos).copied().unwrap_or(false) {
            match self.peek() {
                Tok::Ident(s) | Tok::Num(s) => name.push_str(s),
                Tok::Punct("-") => name.push('-'),
                _ => break,
            }
            self.pos += 1;
        }
        Ok(name)
    }

    fn path_rest(&mut self, first: String) -> R<Path> {
        let mut elems = vec![PathElem::Name(first)];
        loop {
            if self.at_punct(".") && !matches!(self.peek_at(1), Tok::Punct("*")) {
                self.pos += 1;
                elems.push(PathElem::Name(self.name()?));
            } else if self.at_punct("[") {
                self.pos += 1;
                match self.bump() {
                    Tok::Num(n) => {
                        let i = n
                            .parse::<usize>()
                            .map_err(|_| format!("Invalid list index: {n}"))?;
                        elems.push(PathElem::Index(i));
                    }
                    Tok::Str(s) => elems.push(PathElem::Name(s)),
                    _ => return Err("Expected a list index".into()),
                }
                self.expect_punct("]")?;
            } else {
                return Ok(Path(elems));
            }
        }
    }

    fn path(&mut self) -> R<Path> {
        let first = self.name()?;
        self.path_rest(first)
    }

    fn statement(&mut self) -> R<Statement> {
        let word = match self.peek() {
            Tok::Ident(w) => w.to_ascii_lowercase(),
            _ => return Err("Expected data manipulation".into()),
        };
        let stmt = match word.as_str() {
            "select" => self.select()?,
            "insert" => self.insert()?,
            "update" => self.update()?,
            "delete" => self.delete()?,
            "exists" | "create" | "drop" | "alter" | "upsert" | "replace" | "with" => {
                return Err("Expected data manipulation".into());
            }
            _ => return Err("Expected data manipulation".into()),
        };
        self.eat_punct(";");
        if !matches!(self.peek(), Tok::Eof) {
            return Err(self.unexpected("Expected end of statement"));
        }
        Ok(stmt)
    }

    fn select(&mut self) -> R<Statement> {
        self.expect_kw("select")?;
        let projection = if self.eat_punct("*") {
            None
        } else {
            let mut paths = vec![self.path()?];
            while self.eat_punct(",") {
                paths.push(self.path()?);
            }
            Some(paths)
        };
        self.expect_kw("from")?;
        let table = self.table_name()?;
        let index = if self.eat_punct(".") {
            Some(self.name()?)
        } else {
            None
        };
        let filter = if self.eat_kw("where") {
            Some(self.pred()?)
        } else {
            None
        };
        let order = if self.eat_kw("order") {
            self.expect_kw("by")?;
            let p = self.path()?;
            let desc = if self.eat_kw("desc") {
                true
            } else {
                self.eat_kw("asc");
                false
            };
            Some((p, desc))
        } else {
            None
        };
        Ok(Statement::Select {
            projection,
            table,
            index,
            filter,
            order,
        })
    }

    fn insert(&mut self) -> R<Statement> {
        self.expect_kw("insert")?;
        self.expect_kw("into")?;
        let table = self.table_name()?;
        if self.at_kw("values") || self.at_punct("(") {
            return Err("Unsupported operation: Inserting multiple items or with column lists in a statement is not supported, use VALUE instead".into());
        }
        self.expect_kw("value")?;
        let value = self.expr()?;
        Ok(Statement::Insert { table, value })
    }

    fn returning(&mut self, allow_new: bool) -> R<Option<Returning>> {
        if !self.eat_kw("returning") {
            return Ok(None);
        }
        let all = if self.eat_kw("all") {
            true
        } else if self.eat_kw("modified") {
            false
        } else {
            return Err(self.unexpected("Expected ALL or MODIFIED"));
        };
        let new = if self.eat_kw("new") {
            true
        } else if self.eat_kw("old") {
            false
        } else {
            return Err(self.unexpected("Expected OLD or NEW"));
        };
        self.expect_punct("*")?;
        if !allow_new && (new || !all) {
            return Err("Unsupported operation: DELETE can only return ALL OLD *".into());
        }
        Ok(Some(Returning { all, new }))
    }

    fn update(&mut self) -> R<Statement> {
        self.expect_kw("update")?;
        let table = self.table_name()?;
        let mut ops = Vec::new();
        loop {
            if self.eat_kw("set") {
                loop {
                    let p = self.path()?;
                    self.expect_punct("=")?;
                    let e = self.expr()?;
                    ops.push(UpdateOp::Set(p, e));
                    if !self.eat_punct(",") {
                        break;
                    }
                }
            } else if self.eat_kw("remove") {
                loop {
                    ops.push(UpdateOp::Remove(self.path()?));
                    if !self.eat_punct(",") {
                        break;
                    }
                }
            } else {
                break;
            }
        }
        if ops.is_empty() {
            return Err(self.unexpected("Expected SET or REMOVE"));
        }
        self.expect_kw("where")?;
        let filter = self.pred()?;
        let returning = self.returning(true)?;
        Ok(Statement::Update {
            table,
            ops,
            filter,
            returning,
        })
    }

    fn delete(&mut self) -> R<Statement> {
        self.expect_kw("delete")?;
        self.expect_kw("from")?;
        let table = self.table_name()?;
        self.expect_kw("where")?;
        let filter = self.pred()?;
        let returning = self.returning(false)?;
        Ok(Statement::Delete {
            table,
            filter,
            returning,
        })
    }

    fn pred(&mut self) -> R<Pred> {
        self.enter()?;
        let mut left = self.pred_and()?;
        while self.eat_kw("or") {
            let right = self.pred_and()?;
            left = Pred::Or(Box::new(left), Box::new(right));
        }
        self.leave();
        Ok(left)
    }

    fn pred_and(&mut self) -> R<Pred> {
        let mut left = self.pred_not()?;
        while self.eat_kw("and") {
            let right = self.pred_not()?;
            left = Pred::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn pred_not(&mut self) -> R<Pred> {
        if self.eat_kw("not") {
            self.enter()?;
            let inner = self.pred_not()?;
            self.leave();
            return Ok(Pred::Not(Box::new(inner)));
        }
        self.pred_primary()
    }

    fn pred_primary(&mut self) -> R<Pred> {
        if self.eat_punct("(") {
            let p = self.pred()?;
            self.expect_punct(")")?;
            return Ok(p);
        }
        if let Tok::Ident(w) = self.peek().clone()
            && matches!(self.peek_at(1), Tok::Punct("("))
        {
            let name = w.to_ascii_lowercase();
            if matches!(
                name.as_str(),
                "begins_with"
                    | "contains"
                    | "attribute_exists"
                    | "attribute_not_exists"
                    | "attribute_type"
                    | "exists"
            ) {
                self.pos += 2;
                if name == "exists" {
                    return Err("Unsupported operation: EXISTS is supported only as a condition check in a transaction".into());
                }
                let args = self.args(")")?;
                return Ok(Pred::Call(name, args));
            }
        }
        let left = self.expr()?;
        if self.eat_kw("is") {
            let not = self.eat_kw("not");
            if self.eat_kw("missing") {
                return Ok(Pred::IsMissing(left, not));
            }
            if self.eat_kw("null") {
                return Ok(Pred::IsNull(left, not));
            }
            return Err(self.unexpected("Expected MISSING or NULL"));
        }
        let negated = self.eat_kw("not");
        if self.eat_kw("between") {
            let lo = self.expr()?;
            self.expect_kw("and")?;
            let hi = self.expr()?;
            let p = Pred::Between(left, lo, hi);
            return Ok(if negated { Pred::Not(Box::new(p)) } else { p });
        }
        if self.eat_kw("in") {
            let list = if self.eat_punct("[") {
                self.args("]")?
            } else if self.eat_punct("(") {
                self.args(")")?
            } else {
                return Err(self.unexpected("Expected a list"));
            };
            let p = Pred::In(left, list);
            return Ok(if negated { Pred::Not(Box::new(p)) } else { p });
        }
        if negated {
            return Err(self.unexpected("Expected BETWEEN or IN"));
        }
        let op = match self.peek() {
            Tok::Punct("=") => Cmp::Eq,
            Tok::Punct("<>") => Cmp::Ne,
            Tok::Punct("<") => Cmp::Lt,
            Tok::Punct("<=") => Cmp::Le,
            Tok::Punct(">") => Cmp::Gt,
            Tok::Punct(">=") => Cmp::Ge,
            _ => return Err(self.unexpected("Expected a comparison")),
        };
        self.pos += 1;
        let right = self.expr()?;
        Ok(Pred::Cmp(op, left, right))
    }

    /// Comma-separated expressions up to `close` (consumed).
    fn args(&mut self, close: &str) -> R<Vec<Expr>> {
        self.enter()?;
        let mut out = Vec::new();
        if !self.eat_punct(close) {
            loop {
                out.push(self.expr()?);
                if self.eat_punct(close) {
                    break;
                }
                self.expect_punct(",")?;
            }
        }
        self.leave();
        Ok(out)
    }

    fn expr(&mut self) -> R<Expr> {
        let mut left = self.term()?;
        loop {
            if self.eat_punct("+") {
                let right = self.term()?;
                left = Expr::Plus(Box::new(left), Box::new(right));
            } else if self.eat_punct("-") {
                let right = self.term()?;
                left = Expr::Minus(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn term(&mut self) -> R<Expr> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.pos += 1;
                Ok(Expr::Str(s))
            }
            Tok::Num(n) => {
                self.pos += 1;
                Ok(Expr::Num(n))
            }
            Tok::Punct("-") if matches!(self.peek_at(1), Tok::Num(_)) => {
                self.pos += 1;
                let Tok::Num(n) = self.bump() else {
                    return Err("Expected a number".into());
                };
                Ok(Expr::Num(format!("-{n}")))
            }
            Tok::Punct("?") => {
                self.pos += 1;
                self.params += 1;
                Ok(Expr::Param(self.params - 1))
            }
            Tok::Punct("[") => {
                self.pos += 1;
                Ok(Expr::List(self.args("]")?))
            }
            Tok::Punct("<<") => {
                self.pos += 1;
                Ok(Expr::Set(self.args(">>")?))
            }
            Tok::Punct("{") => {
                self.pos += 1;
                self.enter()?;
                let mut members = Vec::new();
                if !self.eat_punct("}") {
                    loop {
                        let key = match self.bump() {
                            Tok::Str(s) | Tok::Quoted(s) => s,
                            _ => return Err("Expected a string as a map key".into()),
                        };
                        self.expect_punct(":")?;
                        members.push((key, self.expr()?));
                        if self.eat_punct("}") {
                            break;
                        }
                        self.expect_punct(",")?;
                    }
                }
                self.leave();
                Ok(Expr::Map(members))
            }
            Tok::Punct("(") => {
                self.pos += 1;
                self.enter()?;
                let e = self.expr()?;
                self.expect_punct(")")?;
                self.leave();
                Ok(e)
            }
            Tok::Quoted(s) => {
                self.pos += 1;
                Ok(Expr::Path(self.path_rest(s)?))
            }
            Tok::Ident(w) => {
                let lower = w.to_ascii_lowercase();
                match lower.as_str() {
                    "true" => {
                        self.pos += 1;
                        return Ok(Expr::Bool(true));
                    }
                    "false" => {
                        self.pos += 1;
                        return Ok(Expr::Bool(false));
                    }
                    "null" => {
                        self.pos += 1;
                        return Ok(Expr::Null);
                    }
                    "missing" => {
                        self.pos += 1;
                        return Ok(Expr::Missing);
                    }
                    _ => {}
                }
                if matches!(self.peek_at(1), Tok::Punct("(")) && !is_keyword(&w) {
                    self.pos += 2;
                    let args = self.args(")")?;
                    return Ok(Expr::Call(lower, args));
                }
                let first = self.name()?;
                Ok(Expr::Path(self.path_rest(first)?))
            }
            _ => Err(self.unexpected("Expected an expression")),
        }
    }
}

/// A parsed statement and how many `?` parameters it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub statement: Statement,
    pub params: usize,
}

/// Parses one statement; the error is AWS's whole ValidationException message.
pub fn parse(src: &str) -> Result<Parsed, String> {
    let (toks, glued) = lex(src).map_err(|e| format!("{MALFORMED}: {e}"))?;
    let mut p = Parser {
        toks,
        glued,
        pos: 0,
        params: 0,
        depth: 0,
    };
    let statement = p.statement().map_err(|e| {
        if e.starts_with("Unsupported operation") {
            e
        } else {
            format!("{MALFORMED}: {e}")
        }
    })?;
    Ok(Parsed {
        statement,
        params: p.params,
    })
}

/// A statement with its parameters substituted: conditions and updates in the expression
/// languages' own types.
#[derive(Debug, Clone)]
pub enum Bound {
    Select {
        projection: Option<Vec<Path>>,
        table: String,
        index: Option<String>,
        filter: Option<Cond>,
        /// Top-level `name = value` conjuncts of the WHERE clause (key candidates).
        equalities: Vec<(String, AttrValue)>,
        order: Option<(Path, bool)>,
    },
    Insert {
        table: String,
        item: Item,
    },
    Update {
        table: String,
        actions: Vec<Action>,
        filter: Cond,
        equalities: Vec<(String, AttrValue)>,
        returning: Option<Returning>,
    },
    Delete {
        table: String,
        filter: Cond,
        equalities: Vec<(String, AttrValue)>,
        returning: Option<Returning>,
    },
}

struct Binder<'a> {
    params: &'a [AttrValue],
}

impl Binder<'_> {
    /// A constant expression's value.
    fn value(&self, e: &Expr) -> R<AttrValue> {
        Ok(match e {
            Expr::Str(s) => AttrValue::S(s.clone()),
            Expr::Num(n) => AttrValue::N(Num::parse(n).map_err(|e| e.to_string())?),
            Expr::Bool(b) => AttrValue::Bool(*b),
            Expr::Null => AttrValue::Null,
            Expr::Param(i) => self.params.get(*i).cloned().ok_or_else(|| {
                "Number of parameters in request and statement don't match.".to_string()
            })?,
            Expr::List(items) => {
                AttrValue::L(items.iter().map(|x| self.value(x)).collect::<R<_>>()?)
            }
            Expr::Map(members) => AttrValue::M(
                members
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.value(v)?)))
                    .collect::<R<_>>()?,
            ),
            Expr::Set(items) => {
                let values: Vec<AttrValue> =
                    items.iter().map(|x| self.value(x)).collect::<R<_>>()?;
                set_of(values)?
            }
            Expr::Missing => return Err("Unsupported operation: MISSING is not a value".into()),
            Expr::Path(_) | Expr::Plus(..) | Expr::Minus(..) | Expr::Call(..) => {
                return Err(
                    "Unsupported operation: Only literals and parameters are allowed here".into(),
                );
            }
        })
    }

    fn operand(&self, e: &Expr) -> R<Operand> {
        match e {
            Expr::Path(p) => Ok(Operand::Path(p.clone())),
            Expr::Call(name, args) if name == "size" && args.len() == 1 => {
                Ok(Operand::Size(Box::new(self.operand(&args[0])?)))
            }
            Expr::Call(name, _) => Err(format!(
                "Unsupported operation: function {name} is not supported here"
            )),
            Expr::Plus(..) | Expr::Minus(..) => Err(
                "Unsupported operation: arithmetic is supported only in the SET clause of UPDATE"
                    .into(),
            ),
            other => Ok(Operand::Value(self.value(other)?)),
        }
    }

    fn path_of(&self, e: &Expr) -> R<Path> {
        match e {
            Expr::Path(p) => Ok(p.clone()),
            _ => Err("Unsupported operation: expected an attribute path".into()),
        }
    }

    fn cond(&self, p: &Pred) -> R<Cond> {
        Ok(match p {
            Pred::Cmp(op, Expr::Missing, x) | Pred::Cmp(op, x, Expr::Missing) => {
                let path = self.path_of(x)?;
                match op {
                    Cmp::Eq => Cond::NotExists(path),
                    Cmp::Ne => Cond::Exists(path),
                    _ => {
                        return Err(
                            "Unsupported operation: MISSING compares only with = and <>".into()
                        );
                    }
                }
            }
            Pred::Cmp(op, a, b) => Cond::Cmp(*op, self.operand(a)?, self.operand(b)?),
            Pred::Between(x, lo, hi) => {
                Cond::Between(self.operand(x)?, self.operand(lo)?, self.operand(hi)?)
            }
            Pred::In(x, list) => {
                if list.is_empty() {
                    return Err(format!("{MALFORMED}: IN requires at least one value"));
                }
                Cond::In(
                    self.operand(x)?,
                    list.iter().map(|e| self.operand(e)).collect::<R<_>>()?,
                )
            }
            Pred::And(a, b) => Cond::And(Box::new(self.cond(a)?), Box::new(self.cond(b)?)),
            Pred::Or(a, b) => Cond::Or(Box::new(self.cond(a)?), Box::new(self.cond(b)?)),
            Pred::Not(a) => Cond::Not(Box::new(self.cond(a)?)),
            Pred::IsMissing(x, not) => {
                let path = self.path_of(x)?;
                if *not {
                    Cond::Exists(path)
                } else {
                    Cond::NotExists(path)
                }
            }
            Pred::IsNull(x, not) => {
                let c = Cond::Type(
                    self.path_of(x)?,
                    Operand::Value(AttrValue::S("NULL".into())),
                );
                if *not { Cond::Not(Box::new(c)) } else { c }
            }
            Pred::Call(name, args) => {
                let want = match name.as_str() {
                    "attribute_exists" | "attribute_not_exists" => 1,
                    _ => 2,
                };
                if args.len() != want {
                    return Err(format!(
                        "{MALFORMED}: Incorrect number of arguments for function {name}"
                    ));
                }
                match name.as_str() {
                    "begins_with" => {
                        Cond::BeginsWith(self.operand(&args[0])?, self.operand(&args[1])?)
                    }
                    "contains" => Cond::Contains(self.operand(&args[0])?, self.operand(&args[1])?),
                    "attribute_exists" => Cond::Exists(self.path_of(&args[0])?),
                    "attribute_not_exists" => Cond::NotExists(self.path_of(&args[0])?),
                    _ => Cond::Type(self.path_of(&args[0])?, self.operand(&args[1])?),
                }
            }
        })
    }

    fn set_value(&self, e: &Expr) -> R<SetValue> {
        Ok(match e {
            Expr::Plus(a, b) => {
                SetValue::Plus(Box::new(self.set_value(a)?), Box::new(self.set_value(b)?))
            }
            Expr::Minus(a, b) => {
                SetValue::Minus(Box::new(self.set_value(a)?), Box::new(self.set_value(b)?))
            }
            Expr::Call(name, args) if name == "list_append" => {
                if args.len() != 2 {
                    return Err(format!(
                        "{MALFORMED}: Incorrect number of arguments for function list_append"
                    ));
                }
                SetValue::ListAppend(
                    Box::new(self.set_value(&args[0])?),
                    Box::new(self.set_value(&args[1])?),
                )
            }
            other => SetValue::Operand(self.operand(other)?),
        })
    }

    fn action(&self, op: &UpdateOp) -> R<Action> {
        match op {
            UpdateOp::Remove(p) => Ok(Action::Remove(p.clone())),
            UpdateOp::Set(p, Expr::Call(name, args))
                if name == "set_add" || name == "set_delete" =>
            {
                if args.len() != 2 {
                    return Err(format!(
                        "{MALFORMED}: Incorrect number of arguments for function {name}"
                    ));
                }
                if args[0] != Expr::Path(p.clone()) {
                    return Err(format!(
                        "Unsupported operation: {name} must name the attribute being set as its first argument"
                    ));
                }
                let v = self.value(&args[1])?;
                if !matches!(v, AttrValue::SS(_) | AttrValue::NS(_) | AttrValue::BS(_)) {
                    return Err(format!(
                        "Unsupported operation: the second argument of {name} must be a set"
                    ));
                }
                Ok(if name == "set_add" {
                    Action::Add(p.clone(), v)
                } else {
                    Action::Delete(p.clone(), v)
                })
            }
            UpdateOp::Set(p, e) => Ok(Action::Set(p.clone(), self.set_value(e)?)),
        }
    }
}

/// A set literal's value: every element a string, every one a number, or every one binary.
fn set_of(values: Vec<AttrValue>) -> R<AttrValue> {
    if values.is_empty() {
        return Err(
            "One or more parameter values were invalid: An string set  may not be empty".into(),
        );
    }
    let dup = || "Input collection contains duplicates".to_string();
    let mixed = || {
        "Unsupported operation: a set's elements must all be strings, all numbers or all binary"
            .to_string()
    };
    match &values[0] {
        AttrValue::S(_) => {
            let mut out: Vec<String> = Vec::new();
            for v in values {
                let AttrValue::S(s) = v else {
                    return Err(mixed());
                };
                if out.contains(&s) {
                    return Err(dup());
                }
                out.push(s);
            }
            Ok(AttrValue::SS(out))
        }
        AttrValue::N(_) => {
            let mut out: Vec<Num> = Vec::new();
            for v in values {
                let AttrValue::N(n) = v else {
                    return Err(mixed());
                };
                if out.contains(&n) {
                    return Err(dup());
                }
                out.push(n);
            }
            Ok(AttrValue::NS(out))
        }
        AttrValue::B(_) => {
            let mut out: Vec<Vec<u8>> = Vec::new();
            for v in values {
                let AttrValue::B(b) = v else {
                    return Err(mixed());
                };
                if out.contains(&b) {
                    return Err(dup());
                }
                out.push(b);
            }
            Ok(AttrValue::BS(out))
        }
        _ => Err(mixed()),
    }
}

/// The `name = value` conjuncts at the top of a WHERE clause.
fn equalities(c: &Cond, out: &mut Vec<(String, AttrValue)>) {
    match c {
        Cond::And(a, b) => {
            equalities(a, out);
            equalities(b, out);
        }
        Cond::Cmp(Cmp::Eq, Operand::Path(p), Operand::Value(v))
        | Cond::Cmp(Cmp::Eq, Operand::Value(v), Operand::Path(p))
            if p.0.len() == 1 =>
        {
            out.push((p.top().to_string(), v.clone()));
        }
        _ => {}
    }
}

/// Substitutes the request's parameters; the error is the whole ValidationException message.
pub fn bind(parsed: &Parsed, params: &[AttrValue]) -> Result<Bound, String> {
    if parsed.params != params.len() {
        return Err("Number of parameters in request and statement don't match.".into());
    }
    let b = Binder { params };
    let eqs = |c: &Cond| {
        let mut out = Vec::new();
        equalities(c, &mut out);
        out
    };
    Ok(match &parsed.statement {
        Statement::Select {
            projection,
            table,
            index,
            filter,
            order,
        } => {
            let filter = filter.as_ref().map(|f| b.cond(f)).transpose()?;
            Bound::Select {
                projection: projection.clone(),
                table: table.clone(),
                index: index.clone(),
                equalities: filter.as_ref().map(eqs).unwrap_or_default(),
                filter,
                order: order.clone(),
            }
        }
        Statement::Insert { table, value } => {
            let AttrValue::M(item) = b.value(value)? else {
                return Err(
                    "Unsupported operation: Insert a single item as a tuple ({...})".into(),
                );
            };
            Bound::Insert {
                table: table.clone(),
                item,
            }
        }
        Statement::Update {
            table,
            ops,
            filter,
            returning,
        } => {
            let filter = b.cond(filter)?;
            Bound::Update {
                table: table.clone(),
                actions: ops.iter().map(|o| b.action(o)).collect::<R<_>>()?,
                equalities: eqs(&filter),
                filter,
                returning: *returning,
            }
        }
        Statement::Delete {
            table,
            filter,
            returning,
        } => {
            let filter = b.cond(filter)?;
            Bound::Delete {
                table: table.clone(),
                equalities: eqs(&filter),
                filter,
                returning: *returning,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::dynamodb::{apply_update, eval};

    fn s(v: &str) -> AttrValue {
        AttrValue::S(v.into())
    }

    fn n(v: &str) -> AttrValue {
        AttrValue::N(Num::parse(v).expect("number"))
    }

    fn bound(src: &str, params: &[AttrValue]) -> Bound {
        bind(&parse(src).expect("parses"), params).expect("binds")
    }

    fn item(pairs: &[(&str, AttrValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn select_star_with_key_equality() {
        let Bound::Select {
            projection,
            table,
            index,
            filter,
            equalities,
            ..
        } = bound(
            r#"SELECT * FROM "Music" WHERE Artist = 'Acme' AND SongTitle = ?"#,
            &[s("x")],
        )
        else {
            panic!("not a select")
        };
        assert_eq!(projection, None);
        assert_eq!(table, "Music");
        assert_eq!(index, None);
        assert_eq!(equalities.len(), 2);
        assert_eq!(equalities[0].0, "Artist");
        let f = filter.expect("filter");
        assert!(eval(
            &item(&[("Artist", s("Acme")), ("SongTitle", s("x"))]),
            &f
        ));
        assert!(!eval(
            &item(&[("Artist", s("Acme")), ("SongTitle", s("y"))]),
            &f
        ));
    }

    #[test]
    fn select_projection_index_and_nested_paths() {
        let Bound::Select {
            projection,
            index,
            filter,
            order,
            ..
        } = bound(
            r#"select a, "b".c[0], d['e'] from "T"."byB" where b.c[0] between 1 and 5 and contains(tags, 'x') order by s desc"#,
            &[],
        )
        else {
            panic!("not a select")
        };
        let p = projection.expect("projection");
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].render(), "[b, c, [0]]");
        assert_eq!(p[2].render(), "[d, e]");
        assert_eq!(index.as_deref(), Some("byB"));
        assert!(order.expect("order").1);
        let f = filter.expect("filter");
        let it = item(&[
            (
                "b",
                AttrValue::M(item(&[("c", AttrValue::L(vec![n("3")]))])),
            ),
            ("tags", AttrValue::SS(vec!["x".into()])),
        ]);
        assert!(eval(&it, &f));
    }

    #[test]
    fn predicates_or_not_in_missing() {
        let Bound::Select { filter, .. } = bound(
            "SELECT * FROM t WHERE (a IN [1, 2] OR NOT b <> 'z') AND c IS MISSING AND d IS NOT MISSING AND begins_with(e, 'pre') AND attribute_exists(d) AND f >= 2 AND f < 3 AND f <= 2 AND g > 'a'",
            &[],
        ) else {
            panic!("not a select")
        };
        let f = filter.expect("filter");
        let ok = item(&[
            ("a", n("2")),
            ("d", AttrValue::Bool(true)),
            ("e", s("prefix")),
            ("f", n("2")),
            ("g", s("b")),
        ]);
        assert!(eval(&ok, &f));
        let mut bad = ok.clone();
        bad.insert("c".into(), AttrValue::Null);
        assert!(!eval(&bad, &f));
        let mut other = ok.clone();
        other.insert("a".into(), n("7"));
        assert!(!eval(&other, &f));
        other.insert("b".into(), s("z"));
        assert!(eval(&other, &f));
    }

    #[test]
    fn insert_literals() {
        let Bound::Insert { table, item } = bound(
            "INSERT INTO \"T\" VALUE {'pk': ?, 'n': -1.5e2, 's': 'it''s', 'ss': <<'a', 'b'>>, 'ns': <<1, 2>>, 'l': [1, 'x', TRUE, NULL], 'm': {'k': {'deep': false}}}",
            &[s("k1")],
        ) else {
            panic!("not an insert")
        };
        assert_eq!(table, "T");
        assert!(item["pk"].equals(&s("k1")));
        assert!(item["n"].equals(&n("-150")));
        assert!(item["s"].equals(&s("it's")));
        assert!(matches!(&item["ss"], AttrValue::SS(v) if v.len() == 2));
        assert!(matches!(&item["ns"], AttrValue::NS(v) if v.len() == 2));
        assert!(matches!(&item["l"], AttrValue::L(v) if v.len() == 4));
        assert!(matches!(&item["m"], AttrValue::M(m) if matches!(&m["k"], AttrValue::M(_))));
    }

    #[test]
    fn update_actions_apply() {
        let Bound::Update {
            actions,
            equalities,
            returning,
            ..
        } = bound(
            "UPDATE t SET n = n + 1 SET l = list_append(l, [3]), ss = set_add(ss, <<'c'>>) SET ns = set_delete(ns, <<1>>) REMOVE gone, m.x WHERE pk = ? RETURNING ALL NEW *",
            &[s("k")],
        )
        else {
            panic!("not an update")
        };
        assert_eq!(equalities.len(), 1);
        assert_eq!(returning.map(Returning::return_values), Some("ALL_NEW"));
        let old = item(&[
            ("pk", s("k")),
            ("n", n("1")),
            ("l", AttrValue::L(vec![n("1")])),
            ("ss", AttrValue::SS(vec!["a".into()])),
            (
                "ns",
                AttrValue::NS(vec![Num::from_i64(1), Num::from_i64(2)]),
            ),
            ("gone", s("x")),
            ("m", AttrValue::M(item(&[("x", n("1")), ("y", n("2"))]))),
        ]);
        let new = apply_update(&old, &actions).expect("applies");
        assert!(new["n"].equals(&n("2")));
        assert!(matches!(&new["l"], AttrValue::L(v) if v.len() == 2));
        assert!(matches!(&new["ss"], AttrValue::SS(v) if v.len() == 2));
        assert!(matches!(&new["ns"], AttrValue::NS(v) if v.len() == 1));
        assert!(!new.contains_key("gone"));
        assert!(matches!(&new["m"], AttrValue::M(m) if m.len() == 1));
    }

    #[test]
    fn bare_table_names_may_hold_dashes_and_digits() {
        for (src, want) in [
            (
                "SELECT * FROM T92112ba2-96b9-47c5-bc5e-0de883809bed",
                "T92112ba2-96b9-47c5-bc5e-0de883809bed",
            ),
            ("select id from unknown-table where id = 1", "unknown-table"),
            ("DELETE FROM t-1e5x WHERE pk = 'a'", "t-1e5x"),
            ("UPDATE my_table.v2 SET a = 1 WHERE pk = 'a'", "my_table"),
        ] {
            match parse(src) {
                Ok(p) => assert_eq!(p.statement.table(), want, "{src}"),
                Err(e) => assert!(src.starts_with("UPDATE"), "{src}: {e}"),
            }
        }
        let p = parse("SELECT * FROM t - x").map(|p| p.statement.table().to_string());
        assert!(p.is_err(), "spaced minus is no table name: {p:?}");
    }

    #[test]
    fn delete_with_returning() {
        let Bound::Delete {
            returning,
            equalities,
            ..
        } = bound(
            "DELETE FROM t WHERE pk = 'a' AND sk = 2 RETURNING ALL OLD *",
            &[],
        )
        else {
            panic!("not a delete")
        };
        assert_eq!(equalities.len(), 2);
        assert_eq!(returning.map(Returning::return_values), Some("ALL_OLD"));
        assert!(parse("DELETE FROM t WHERE pk = 'a' RETURNING ALL NEW *").is_err());
    }

    #[test]
    fn errors_carry_aws_wording() {
        let cases = [
            (
                "CREATE TABLE t",
                "Statement wasn't well formed, can't be processed: Expected data manipulation",
            ),
            (
                "",
                "Statement wasn't well formed, can't be processed: Expected data manipulation",
            ),
            (
                "SELECT * FROM",
                "Statement wasn't well formed, can't be processed: Unexpected end of statement",
            ),
            (
                "SELECT * FROM t WHERE a = 'x",
                "Statement wasn't well formed, can't be processed: Unterminated string literal",
            ),
            (
                "SELECT * FROM t WHERE",
                "Statement wasn't well formed, can't be processed: Unexpected end of statement",
            ),
            (
                "SELECT * FROM t t2",
                "Statement wasn't well formed, can't be processed: Unexpected token: Expected end of statement",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(parse(src).expect_err(src), want, "{src}");
        }
        let p = parse("SELECT * FROM t WHERE a = ?").expect("parses");
        assert_eq!(
            bind(&p, &[]).expect_err("no params"),
            "Number of parameters in request and statement don't match."
        );
        let p = parse("INSERT INTO t VALUE {'a': <<'x', 'x'>>}").expect("parses");
        assert_eq!(
            bind(&p, &[]).expect_err("dup"),
            "Input collection contains duplicates"
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let src = format!(
            "SELECT * FROM t WHERE {}a = 1{}",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        assert!(parse(&src).is_err());
        let src = format!("INSERT INTO t VALUE {}", "[".repeat(5000));
        assert!(parse(&src).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_text(src in "\\PC{0,80}") {
            if let Ok(p) = parse(&src) {
                let _ = bind(&p, &vec![AttrValue::S("x".into()); p.params]);
            }
        }

        #[test]
        fn never_panics_on_token_soup(parts in proptest::collection::vec(prop_oneof![
            Just("SELECT"), Just("*"), Just("FROM"), Just("\"t\""), Just("WHERE"), Just("a"),
            Just("="), Just("?"), Just("'x'"), Just("1"), Just("AND"), Just("OR"), Just("NOT"),
            Just("("), Just(")"), Just("["), Just("]"), Just("{"), Just("}"), Just("<<"),
            Just(">>"), Just(","), Just(":"), Just("."), Just("UPDATE"), Just("SET"),
            Just("REMOVE"), Just("INSERT"), Just("INTO"), Just("VALUE"), Just("DELETE"),
            Just("IN"), Just("BETWEEN"), Just("IS"), Just("MISSING"), Just("+"), Just("-"),
            Just("list_append"), Just("set_add"), Just("RETURNING"), Just("ALL"), Just("NEW"),
        ], 0..30)) {
            let src = parts.join(" ");
            if let Ok(p) = parse(&src) {
                let params = vec![AttrValue::N(Num::from_i64(1)); p.params];
                if let Ok(b) = bind(&p, &params) {
                    let it = Item::new();
                    match b {
                        Bound::Select { filter: Some(f), .. } => { let _ = eval(&it, &f); }
                        Bound::Update { actions, filter, .. } => {
                            let _ = eval(&it, &filter);
                            let _ = apply_update(&it, &actions);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}
