//! Parsers for DynamoDB's expression languages: condition (and filter) expressions, key
//! condition expressions (parsed as conditions; their shape is checked against the key schema
//! by the service), update expressions and projection expressions, with `#name` and `:value`
//! placeholders resolved while parsing and AWS's ValidationException wording.

use std::collections::{BTreeMap, BTreeSet};

use super::reserved::is_reserved;
use super::value::AttrValue;

/// One step of a document path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElem {
    Name(String),
    Index(usize),
}

/// A document path: `a.b[2].c`, names already resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Path(pub Vec<PathElem>);

impl Path {
    pub fn top(&self) -> &str {
        match &self.0[0] {
            PathElem::Name(n) => n,
            PathElem::Index(_) => "",
        }
    }

    /// AWS's rendering in errors: `[a, b, [2]]`.
    pub fn render(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| match e {
                PathElem::Name(n) => n.clone(),
                PathElem::Index(i) => format!("[{i}]"),
            })
            .collect();
        format!("[{}]", parts.join(", "))
    }
}

#[derive(Debug, Clone)]
pub enum Operand {
    Path(Path),
    Value(AttrValue),
    Size(Box<Operand>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
pub enum Cond {
    Cmp(Cmp, Operand, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Exists(Path),
    NotExists(Path),
    Type(Path, Operand),
    BeginsWith(Operand, Operand),
    Contains(Operand, Operand),
}

/// The right-hand side of a SET action.
#[derive(Debug, Clone)]
pub enum SetValue {
    Operand(Operand),
    IfNotExists(Path, Box<SetValue>),
    ListAppend(Box<SetValue>, Box<SetValue>),
    Plus(Box<SetValue>, Box<SetValue>),
    Minus(Box<SetValue>, Box<SetValue>),
}

#[derive(Debug, Clone)]
pub enum Action {
    Set(Path, SetValue),
    Remove(Path),
    Add(Path, AttrValue),
    Delete(Path, AttrValue),
}

impl Action {
    pub fn path(&self) -> &Path {
        match self {
            Action::Set(p, _) | Action::Remove(p) | Action::Add(p, _) | Action::Delete(p, _) => p,
        }
    }
}

/// The placeholders of one request, shared by all its expressions, and which of them were used.
pub struct Placeholders<'a> {
    pub names: &'a BTreeMap<String, String>,
    pub values: &'a BTreeMap<String, AttrValue>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

impl<'a> Placeholders<'a> {
    pub fn new(
        names: &'a BTreeMap<String, String>,
        values: &'a BTreeMap<String, AttrValue>,
    ) -> Self {
        Placeholders {
            names,
            values,
            used_names: BTreeSet::new(),
            used_values: BTreeSet::new(),
        }
    }

    /// AWS's complaint about placeholders no expression used, names first.
    pub fn check_unused(&self) -> Result<(), String> {
        let unused_names: Vec<&str> = self
            .names
            .keys()
            .filter(|k| !self.used_names.contains(*k))
            .map(String::as_str)
            .collect();
        if !unused_names.is_empty() {
            return Err(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                unused_names.join(", ")
            ));
        }
        let unused_values: Vec<&str> = self
            .values
            .keys()
            .filter(|k| !self.used_values.contains(*k))
            .map(String::as_str)
            .collect();
        if !unused_values.is_empty() {
            return Err(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                unused_values.join(", ")
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Name(String),
    Value(String),
    Int(String),
    Punct(&'static str),
    Bad(char),
    Eof,
}

struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn lex(src: &str) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |j: usize| {
        let mut k = j;
        while k < bytes.len() && (bytes[k].is_ascii_alphanumeric() || bytes[k] == b'_') {
            k += 1;
        }
        k
    };
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = if c.is_ascii_alphabetic() || c == b'_' {
            i = word(i);
            Tok::Ident(src[start..i].to_string())
        } else if c.is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            Tok::Int(src[start..i].to_string())
        } else if c == b'#' || c == b':' {
            i = word(i + 1);
            let text = src[start..i].to_string();
            if c == b'#' {
                Tok::Name(text)
            } else {
                Tok::Value(text)
            }
        } else {
            let two = src.get(i..i + 2).unwrap_or("");
            let p: Option<&'static str> = match two {
                "<=" => Some("<="),
                ">=" => Some(">="),
                "<>" => Some("<>"),
                _ => None,
            };
            if let Some(p) = p {
                i += 2;
                Tok::Punct(p)
            } else {
                let p = match c {
                    b'(' => Some("("),
                    b')' => Some(")"),
                    b'[' => Some("["),
                    b']' => Some("]"),
                    b'.' => Some("."),
                    b',' => Some(","),
                    b'=' => Some("="),
                    b'<' => Some("<"),
                    b'>' => Some(">"),
                    b'+' => Some("+"),
                    b'-' => Some("-"),
                    _ => None,
                };
                match p {
                    Some(p) => {
                        i += 1;
                        Tok::Punct(p)
                    }
                    None => {
                        let ch = src[i..].chars().next().unwrap_or('?');
                        i += ch.len_utf8();
                        Tok::Bad(ch)
                    }
                }
            }
        };
        out.push(Token { tok, start, end: i });
    }
    out.push(Token {
        tok: Tok::Eof,
        start: src.len(),
        end: src.len(),
    });
    out
}

struct Parser<'s, 'p, 'a> {
    src: &'s str,
    toks: Vec<Token>,
    pos: usize,
    kind: &'static str,
    ph: &'p mut Placeholders<'a>,
}

type PResult<T> = Result<T, String>;

fn is_kw(t: &Tok, kw: &str) -> bool {
    matches!(t, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
}

const CONDITION_KEYWORDS: [&str; 5] = ["AND", "OR", "NOT", "BETWEEN", "IN"];
const UPDATE_KEYWORDS: [&str; 4] = ["SET", "REMOVE", "ADD", "DELETE"];

impl<'s, 'p, 'a> Parser<'s, 'p, 'a> {
    fn new(src: &'s str, kind: &'static str, ph: &'p mut Placeholders<'a>) -> PResult<Self> {
        if src.trim().is_empty() {
            return Err(format!("Invalid {kind}: The expression can not be empty;"));
        }
        Ok(Parser {
            src,
            toks: lex(src),
            pos: 0,
            kind,
            ph,
        })
    }

    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)].tok
    }

    fn bump(&mut self) -> &Tok {
        let i = self.pos;
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        &self.toks[i].tok
    }

    fn fail<T>(&self, msg: impl std::fmt::Display) -> PResult<T> {
        Err(format!("Invalid {}: {msg}", self.kind))
    }

    /// AWS's syntax error: the offending token and the text around it (the tokens either side).
    fn syntax_error<T>(&self) -> PResult<T> {
        let t = &self.toks[self.pos];
        let token = match &t.tok {
            Tok::Eof => "<EOF>".to_string(),
            _ => self.src[t.start..t.end].to_string(),
        };
        let from = if self.pos > 0 {
            self.toks[self.pos - 1].start
        } else {
            t.start
        };
        let to = self.toks[(self.pos + 1).min(self.toks.len() - 1)].end;
        let near = &self.src[from..to.max(from)];
        self.fail(format!(
            "Syntax error; token: \"{token}\", near: \"{near}\""
        ))
    }

    fn expect(&mut self, p: &str) -> PResult<()> {
        if *self.peek() == Tok::Punct(leak(p)) {
            self.bump();
            Ok(())
        } else {
            self.syntax_error()
        }
    }

    fn at_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn end(&self) -> PResult<()> {
        if *self.peek() == Tok::Eof {
            Ok(())
        } else {
            self.syntax_error()
        }
    }

    fn name_part(&mut self, keywords: &[&str]) -> PResult<String> {
        match self.peek().clone() {
            Tok::Ident(s) if !keywords.iter().any(|k| s.eq_ignore_ascii_case(k)) => {
                if is_reserved(&s) {
                    return self.fail(format!(
                        "Attribute name is a reserved keyword; reserved keyword: {s}"
                    ));
                }
                self.bump();
                Ok(s)
            }
            Tok::Name(n) => {
                self.bump();
                match self.ph.names.get(&n) {
                    Some(real) => {
                        self.ph.used_names.insert(n);
                        Ok(real.clone())
                    }
                    None => self.fail(format!(
                        "An expression attribute name used in the document path is not defined; attribute name: {n}"
                    )),
                }
            }
            _ => self.syntax_error(),
        }
    }

    fn path(&mut self, keywords: &[&str]) -> PResult<Path> {
        let mut elems = vec![PathElem::Name(self.name_part(keywords)?)];
        loop {
            if self.at_punct(".") {
                self.bump();
                elems.push(PathElem::Name(self.name_part(keywords)?));
            } else if self.at_punct("[") {
                self.bump();
                let Tok::Int(n) = self.peek().clone() else {
                    return self.syntax_error();
                };
                let Ok(i) = n.parse::<usize>() else {
                    return self.syntax_error();
                };
                self.bump();
                self.expect("]")?;
                elems.push(PathElem::Index(i));
            } else {
                return Ok(Path(elems));
            }
        }
    }

    fn value(&mut self) -> PResult<AttrValue> {
        let Tok::Value(v) = self.peek().clone() else {
            return self.syntax_error();
        };
        self.bump();
        match self.ph.values.get(&v) {
            Some(val) => {
                self.ph.used_values.insert(v);
                Ok(val.clone())
            }
            None => self.fail(format!(
                "An expression attribute value used in expression is not defined; attribute value: {v}"
            )),
        }
    }

    // ---- conditions ----

    fn cond_or(&mut self) -> PResult<Cond> {
        let mut left = self.cond_and()?;
        while is_kw(self.peek(), "OR") {
            self.bump();
            let right = self.cond_and()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn cond_and(&mut self) -> PResult<Cond> {
        let mut left = self.cond_not()?;
        while is_kw(self.peek(), "AND") {
            self.bump();
            let right = self.cond_not()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn cond_not(&mut self) -> PResult<Cond> {
        if is_kw(self.peek(), "NOT") {
            self.bump();
            return Ok(Cond::Not(Box::new(self.cond_not()?)));
        }
        self.cond_atom()
    }

    fn cond_atom(&mut self) -> PResult<Cond> {
        if self.at_punct("(") {
            // Either a parenthesised condition or a parenthesised operand: try the first.
            let save = self.pos;
            self.bump();
            if let Ok(c) = self.cond_or()
                && self.at_punct(")")
            {
                self.bump();
                return Ok(c);
            }
            self.pos = save;
        }
        if let (Tok::Ident(name), Tok::Punct("(")) = (self.peek().clone(), self.peek_at(1).clone())
            && !CONDITION_KEYWORDS
                .iter()
                .any(|k| name.eq_ignore_ascii_case(k))
            && name != "size"
        {
            return self.cond_function(&name);
        }
        let left = self.operand()?;
        let t = self.peek().clone();
        let cmp = match t {
            Tok::Punct("=") => Some(Cmp::Eq),
            Tok::Punct("<>") => Some(Cmp::Ne),
            Tok::Punct("<") => Some(Cmp::Lt),
            Tok::Punct("<=") => Some(Cmp::Le),
            Tok::Punct(">") => Some(Cmp::Gt),
            Tok::Punct(">=") => Some(Cmp::Ge),
            _ => None,
        };
        if let Some(cmp) = cmp {
            self.bump();
            let right = self.operand()?;
            if let (Operand::Path(a), Operand::Path(b)) = (&left, &right)
                && a == b
            {
                let op = match cmp {
                    Cmp::Eq => "=",
                    Cmp::Ne => "<>",
                    Cmp::Lt => "<",
                    Cmp::Le => "<=",
                    Cmp::Gt => ">",
                    Cmp::Ge => ">=",
                };
                return self.fail(format!(
                    "The first operand must be distinct from the remaining operands for this operator or function; operator: {op}, first operand: {}",
                    a.render()
                ));
            }
            return Ok(Cond::Cmp(cmp, left, right));
        }
        if is_kw(&t, "BETWEEN") {
            self.bump();
            let low = self.operand()?;
            if !is_kw(self.peek(), "AND") {
                return self.syntax_error();
            }
            self.bump();
            let high = self.operand()?;
            if let (Operand::Value(a), Operand::Value(b)) = (&low, &high) {
                let show = |v: &AttrValue| {
                    let j = v.to_json();
                    let (k, val) = j
                        .as_object()
                        .and_then(|o| o.iter().next())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .unwrap_or_default();
                    format!(
                        "AttributeValue: {{{k}:{}}}",
                        val.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| val.to_string())
                    )
                };
                if a.type_name() != b.type_name() {
                    return self.fail(format!(
                        "The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: {}, upper bound operand: {}",
                        show(a), show(b)
                    ));
                }
                if super::eval::compare(a, b) == Some(std::cmp::Ordering::Greater) {
                    return self.fail(format!(
                        "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: {}, upper bound operand: {}",
                        show(a), show(b)
                    ));
                }
            }
            return Ok(Cond::Between(left, low, high));
        }
        if is_kw(&t, "IN") {
            self.bump();
            self.expect("(")?;
            let mut list = vec![self.operand()?];
            while self.at_punct(",") {
                self.bump();
                list.push(self.operand()?);
            }
            self.expect(")")?;
            return Ok(Cond::In(left, list));
        }
        if let Operand::Size(_) = left {
            return self.fail(
                "The function is not allowed to be used this way in an expression; function: size",
            );
        }
        self.syntax_error()
    }

    fn args(&mut self) -> PResult<Vec<Operand>> {
        self.expect("(")?;
        let mut args = vec![self.operand()?];
        while self.at_punct(",") {
            self.bump();
            args.push(self.operand()?);
        }
        self.expect(")")?;
        Ok(args)
    }

    fn cond_function(&mut self, name: &str) -> PResult<Cond> {
        let arity = match name {
            "attribute_exists" | "attribute_not_exists" => 1,
            "attribute_type" | "begins_with" | "contains" => 2,
            _ => return self.fail(format!("Invalid function name; function: {name}")),
        };
        self.bump();
        let mut args = self.args()?;
        if args.len() != arity {
            return self.fail(format!(
                "Incorrect number of operands for operator or function; operator or function: {name}, number of operands: {}",
                args.len()
            ));
        }
        let second = if arity == 2 { args.pop() } else { None };
        let first = args.pop().expect("arity checked");
        let need_path = |p: &Self, op: Operand| -> PResult<Path> {
            match op {
                Operand::Path(path) => Ok(path),
                _ => p.fail(format!(
                    "Operator or function requires a document path; operator or function: {name}"
                )),
            }
        };
        Ok(match name {
            "attribute_exists" => Cond::Exists(need_path(self, first)?),
            "attribute_not_exists" => Cond::NotExists(need_path(self, first)?),
            "attribute_type" => {
                let path = need_path(self, first)?;
                let t = second.expect("arity checked");
                if let Operand::Value(v) = &t {
                    match v {
                        AttrValue::S(s) => {
                            if !["S", "N", "B", "NULL", "SS", "BOOL", "L", "BS", "NS", "M"]
                                .contains(&s.as_str())
                            {
                                return self.fail(format!(
                                    "Invalid attribute type name found; type: {s}, valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}"
                                ));
                            }
                        }
                        other => {
                            return self.fail(format!(
                                "Incorrect operand type for operator or function; operator or function: attribute_type, operand type: {}",
                                other.type_name()
                            ));
                        }
                    }
                }
                Cond::Type(path, t)
            }
            "begins_with" => {
                let s = second.expect("arity checked");
                for op in [&first, &s] {
                    if let Operand::Value(v) = op
                        && !matches!(v, AttrValue::S(_) | AttrValue::B(_))
                    {
                        return self.fail(format!(
                            "Incorrect operand type for operator or function; operator or function: begins_with, operand type: {}",
                            v.type_name()
                        ));
                    }
                }
                Cond::BeginsWith(first, s)
            }
            _ => Cond::Contains(first, second.expect("arity checked")),
        })
    }

    fn operand(&mut self) -> PResult<Operand> {
        if self.at_punct("(") {
            self.bump();
            let op = self.operand()?;
            self.expect(")")?;
            return Ok(op);
        }
        match self.peek().clone() {
            Tok::Value(_) => Ok(Operand::Value(self.value()?)),
            Tok::Ident(name) if *self.peek_at(1) == Tok::Punct("(") => {
                if name != "size" {
                    if [
                        "attribute_exists",
                        "attribute_not_exists",
                        "attribute_type",
                        "begins_with",
                        "contains",
                    ]
                    .contains(&name.as_str())
                    {
                        return self.fail(format!(
                            "The function is not allowed to be used this way in an expression; function: {name}"
                        ));
                    }
                    return self.fail(format!("Invalid function name; function: {name}"));
                }
                self.bump();
                let mut args = self.args()?;
                if args.len() != 1 {
                    return self.fail(format!(
                        "Incorrect number of operands for operator or function; operator or function: size, number of operands: {}",
                        args.len()
                    ));
                }
                let arg = args.pop().expect("one argument");
                if let Operand::Value(v) = &arg
                    && matches!(v, AttrValue::N(_) | AttrValue::Bool(_) | AttrValue::Null)
                {
                    return self.fail(format!(
                        "Incorrect operand type for operator or function; operator or function: size, operand type: {}",
                        v.type_name()
                    ));
                }
                Ok(Operand::Size(Box::new(arg)))
            }
            _ => Ok(Operand::Path(self.path(&CONDITION_KEYWORDS)?)),
        }
    }

    // ---- updates ----

    fn update(&mut self) -> PResult<Vec<Action>> {
        let mut actions = Vec::new();
        let mut seen = BTreeSet::new();
        loop {
            let clause = match self.peek() {
                Tok::Ident(s) => UPDATE_KEYWORDS
                    .iter()
                    .find(|k| s.eq_ignore_ascii_case(k))
                    .copied(),
                _ => None,
            };
            let Some(clause) = clause else {
                if actions.is_empty() || *self.peek() != Tok::Eof {
                    return self.syntax_error();
                }
                break;
            };
            self.bump();
            if !seen.insert(clause) {
                return self.fail(format!(
                    "The \"{clause}\" section can only be used once in an update expression;"
                ));
            }
            loop {
                let path = self.path(&UPDATE_KEYWORDS)?;
                let action = match clause {
                    "SET" => {
                        self.expect("=")?;
                        Action::Set(path, self.set_value()?)
                    }
                    "REMOVE" => Action::Remove(path),
                    _ => {
                        let v = self.value()?;
                        let ok = if clause == "ADD" {
                            matches!(
                                v,
                                AttrValue::N(_)
                                    | AttrValue::SS(_)
                                    | AttrValue::NS(_)
                                    | AttrValue::BS(_)
                            )
                        } else {
                            matches!(v, AttrValue::SS(_) | AttrValue::NS(_) | AttrValue::BS(_))
                        };
                        if !ok {
                            return self.fail(format!(
                                "Incorrect operand type for operator or function; operator: {clause}, operand type: {}",
                                v.type_word()
                            ));
                        }
                        if clause == "ADD" {
                            Action::Add(path, v)
                        } else {
                            Action::Delete(path, v)
                        }
                    }
                };
                actions.push(action);
                if self.at_punct(",") {
                    self.bump();
                } else {
                    break;
                }
            }
            if *self.peek() == Tok::Eof {
                break;
            }
        }
        let paths: Vec<&Path> = actions.iter().map(Action::path).collect();
        self.check_overlaps(&paths)?;
        Ok(actions)
    }

    fn check_overlaps(&self, paths: &[&Path]) -> PResult<()> {
        for (i, a) in paths.iter().enumerate() {
            for b in &paths[..i] {
                let mut diverged = false;
                for (x, y) in b.0.iter().zip(&a.0) {
                    match (x, y) {
                        (PathElem::Name(_), PathElem::Index(_))
                        | (PathElem::Index(_), PathElem::Name(_)) => {
                            return self.fail(format!(
                                "Two document paths conflict with each other; must remove or rewrite one of these paths; path one: {}, path two: {}",
                                b.render(), a.render()
                            ));
                        }
                        _ if x != y => {
                            diverged = true;
                            break;
                        }
                        _ => {}
                    }
                }
                if !diverged {
                    return self.fail(format!(
                        "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: {}, path two: {}",
                        b.render(),
                        a.render()
                    ));
                }
            }
        }
        Ok(())
    }

    fn set_value(&mut self) -> PResult<SetValue> {
        let left = self.set_operand()?;
        if self.at_punct("+") || self.at_punct("-") {
            let plus = self.at_punct("+");
            self.bump();
            let right = self.set_operand()?;
            for side in [&left, &right] {
                if let SetValue::Operand(Operand::Value(v)) = side
                    && !matches!(v, AttrValue::N(_))
                {
                    return self.fail(format!(
                        "Incorrect operand type for operator or function; operator or function: {}, operand type: {}",
                        if plus { "+" } else { "-" },
                        v.type_name()
                    ));
                }
            }
            return Ok(if plus {
                SetValue::Plus(Box::new(left), Box::new(right))
            } else {
                SetValue::Minus(Box::new(left), Box::new(right))
            });
        }
        Ok(left)
    }

    fn set_operand(&mut self) -> PResult<SetValue> {
        if self.at_punct("(") {
            self.bump();
            let v = self.set_value()?;
            self.expect(")")?;
            return Ok(v);
        }
        match self.peek().clone() {
            Tok::Value(_) => Ok(SetValue::Operand(Operand::Value(self.value()?))),
            Tok::Ident(name) if *self.peek_at(1) == Tok::Punct("(") => {
                self.bump();
                self.expect("(")?;
                let mut args = vec![self.set_value()?];
                while self.at_punct(",") {
                    self.bump();
                    args.push(self.set_value()?);
                }
                self.expect(")")?;
                let arity_error = |p: &Self, n: usize| {
                    p.fail::<SetValue>(format!(
                        "Incorrect number of operands for operator or function; operator or function: {name}, number of operands: {n}"
                    ))
                };
                match name.as_str() {
                    "if_not_exists" => {
                        if args.len() != 2 {
                            return arity_error(self, args.len());
                        }
                        let fallback = args.pop().expect("two");
                        let SetValue::Operand(Operand::Path(path)) = args.pop().expect("two")
                        else {
                            return self.fail(
                                "Operator or function requires a document path; operator or function: if_not_exists",
                            );
                        };
                        Ok(SetValue::IfNotExists(path, Box::new(fallback)))
                    }
                    "list_append" => {
                        if args.len() != 2 {
                            return arity_error(self, args.len());
                        }
                        for a in &args {
                            if let SetValue::Operand(Operand::Value(v)) = a
                                && !matches!(v, AttrValue::L(_))
                            {
                                return self.fail(format!(
                                    "Incorrect operand type for operator or function; operator or function: list_append, operand type: {}",
                                    v.type_name()
                                ));
                            }
                        }
                        let b = args.pop().expect("two");
                        let a = args.pop().expect("two");
                        Ok(SetValue::ListAppend(Box::new(a), Box::new(b)))
                    }
                    _ => self.fail(format!("Invalid function name; function: {name}")),
                }
            }
            _ => Ok(SetValue::Operand(Operand::Path(
                self.path(&UPDATE_KEYWORDS)?,
            ))),
        }
    }
}

fn leak(p: &str) -> &'static str {
    match p {
        "(" => "(",
        ")" => ")",
        "[" => "[",
        "]" => "]",
        "=" => "=",
        _ => ",",
    }
}

/// Parses a ConditionExpression (`kind` names it in errors: `ConditionExpression`,
/// `FilterExpression`, `KeyConditionExpression`).
pub fn parse_condition(
    src: &str,
    kind: &'static str,
    ph: &mut Placeholders<'_>,
) -> Result<Cond, String> {
    let mut p = Parser::new(src, kind, ph)?;
    let c = p.cond_or()?;
    p.end()?;
    Ok(c)
}

pub fn parse_update(src: &str, ph: &mut Placeholders<'_>) -> Result<Vec<Action>, String> {
    let mut p = Parser::new(src, "UpdateExpression", ph)?;
    p.update()
}

pub fn parse_projection(src: &str, ph: &mut Placeholders<'_>) -> Result<Vec<Path>, String> {
    let mut p = Parser::new(src, "ProjectionExpression", ph)?;
    let mut paths = vec![p.path(&[])?];
    while p.at_punct(",") {
        p.bump();
        paths.push(p.path(&[])?);
    }
    p.end()?;
    let refs: Vec<&Path> = paths.iter().collect();
    p.check_overlaps(&refs)?;
    Ok(paths)
}
