//! The CloudWatch Logs filter pattern language, as FilterLogEvents, subscription filters and
//! metric filters read it (metric filters also take values out of matching messages). Pure: `tsumiki-logs` re-exports it as `filter`.
//!
//! Four forms, told apart by their first character once blanks are trimmed:
//! - terms (`ERROR "exact phrase" ?ORterm -excluded`): case-sensitive substrings; every plain
//!   term must occur, at least one `?` term must occur when there are any, no `-` term may;
//! - JSON (`{ $.a.b[0] = "x*" && ($.n > 3 || $.f IS TRUE) }`): selectors into a message that
//!   parses as JSON, with `=`/`!=` on strings (leading and trailing `*` wildcards) and numbers,
//!   `< > <= >=` on numbers, `IS NULL`, `NOT EXISTS`, `IS TRUE`, `IS FALSE`, `&&` before `||`;
//! - space-delimited (`[ip, user, ..., status = 4* && status != 404, bytes > 1000]`): fields of
//!   a message split on blanks, where `"..."` and `[...]` hold one field each; `...` stands for
//!   any number of fields; a slot is named by its first name and may carry conditions;
//! - regex (`%ERROR|WARN%`): a search with the `regex` crate. `%regex%` also serves as a value
//!   in JSON and space-delimited conditions.
//!
//! Parsing never panics on any input (a proptest checks it); a pattern AWS would refuse is an
//! [`InvalidPattern`] the caller turns into `InvalidParameterException`.

use std::fmt;

use regex::Regex;
use serde_json::Value;

/// Longest pattern the model allows; patterns arrive validated, but the parser also serves
/// callers that did not validate.
const MAX_PATTERN_LEN: usize = 1024;
/// AWS allows two regular expressions in one JSON or space-delimited pattern.
const MAX_REGEXES: usize = 2;
/// Compiled size cap, so a hostile `%a{1000}{1000}%` cannot eat the server's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Nesting depth of parentheses, so a pattern of 500 `(` cannot overflow the stack.
const MAX_DEPTH: usize = 32;

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPattern(pub String);

impl fmt::Display for InvalidPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Invalid filter pattern: {}", self.0)
    }
}

fn invalid<T>(why: impl Into<String>) -> Result<T, InvalidPattern> {
    Err(InvalidPattern(why.into()))
}

/// A parsed filter pattern.
#[derive(Debug)]
pub struct FilterPattern {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    All,
    Terms(Terms),
    Regex(Regex),
    Json(Expr<JsonCond>),
    Delimited(Delimited),
}

impl FilterPattern {
    pub fn parse(pattern: &str) -> Result<FilterPattern, InvalidPattern> {
        if pattern.len() > MAX_PATTERN_LEN {
            return invalid(format!("longer than {MAX_PATTERN_LEN} characters"));
        }
        let trimmed = pattern.trim();
        let kind = if trimmed.is_empty() {
            Kind::All
        } else if trimmed.starts_with('{') {
            Kind::Json(parse_json(trimmed)?)
        } else if trimmed.starts_with('[') {
            Kind::Delimited(parse_delimited(trimmed)?)
        } else if trimmed.len() >= 2 && trimmed.starts_with('%') && trimmed.ends_with('%') {
            Kind::Regex(compile_regex(&trimmed[1..trimmed.len() - 1])?)
        } else {
            Kind::Terms(parse_terms(trimmed)?)
        };
        Ok(FilterPattern { kind })
    }

    pub fn matches(&self, message: &str) -> bool {
        match &self.kind {
            Kind::All => true,
            Kind::Terms(t) => t.matches(message),
            Kind::Regex(r) => r.is_match(message),
            Kind::Json(expr) => match serde_json::from_str::<Value>(message.trim()) {
                Ok(doc) => expr.eval(&mut |c: &JsonCond| c.eval(&doc)),
                Err(_) => false,
            },
            Kind::Delimited(d) => d.matches(message),
        }
    }

    /// What a matching message's fields are named by a space-delimited pattern (`$name` ->
    /// field, in slot order), as TestMetricFilter's `extractedValues` shows them; empty for the
    /// other forms, for a message the pattern does not match, and when several `...` make the
    /// alignment ambiguous.
    pub fn extracted_values(&self, message: &str) -> Vec<(String, String)> {
        match &self.kind {
            Kind::Delimited(d) if d.matches(message) => d.bind(message).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The value a metric filter's `metricValue` selects from a matching message: `$.a.b[0]`
    /// from a JSON message (a scalar, as text), `$name` from a space-delimited pattern's named
    /// field. `None` when the message does not match or has no such value.
    pub fn value(&self, message: &str, selector: &str) -> Option<String> {
        if !self.matches(message) {
            return None;
        }
        if selector.starts_with("$.") || selector.starts_with("$[") {
            let mut s = Scanner::new(selector);
            let path = parse_json_path(&mut s).ok()?;
            if !s.rest().is_empty() {
                return None;
            }
            let doc = serde_json::from_str::<Value>(message.trim()).ok()?;
            let mut at = Some(&doc);
            for step in &path {
                at = at.and_then(|v| match step {
                    Step::Key(k) => v.as_object().and_then(|o| o.get(k)),
                    Step::Index(i) => v.as_array().and_then(|a| a.get(*i)),
                });
            }
            return match at? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
        }
        let name = selector.strip_prefix('$')?;
        self.extracted_values(message)
            .into_iter()
            .find(|(n, _)| n.trim_start_matches('$') == name)
            .map(|(_, v)| v)
    }

    /// Checks a metric filter's `metricValue`: a number, or a selector this pattern can fill.
    pub fn check_metric_value(&self, value: &str) -> Result<(), InvalidPattern> {
        if value.parse::<f64>().is_ok() {
            return Ok(());
        }
        if value.starts_with("$.") || value.starts_with("$[") {
            if !matches!(self.kind, Kind::Json(_)) {
                return invalid("a JSON selector as metric value needs a JSON filter pattern");
            }
            let mut s = Scanner::new(value);
            parse_json_path(&mut s)?;
            return s.expect_end();
        }
        match (&self.kind, value.strip_prefix('$')) {
            (Kind::Delimited(d), Some(name))
                if d.slots.iter().any(|slot| matches!(slot, Slot::Field { name: n, .. } if n.trim_start_matches('$') == name)) =>
            {
                Ok(())
            }
            _ => invalid(format!(
                "the metric value {value:?} is neither a number nor a field of the pattern"
            )),
        }
    }
}

/// AWS's regex dialect: no groups, ASCII only, a few symbols refused.
fn compile_regex(body: &str) -> Result<Regex, InvalidPattern> {
    if body.is_empty() {
        return invalid("an empty regular expression");
    }
    if let Some(c) = body
        .chars()
        .find(|c| !c.is_ascii() || matches!(c, '(' | ')' | '!' | '%'))
    {
        return invalid(format!(
            "the character {c:?} is not supported in a regular expression"
        ));
    }
    regex::RegexBuilder::new(body)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .or_else(|e| invalid(format!("bad regular expression: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Terms.

#[derive(Debug, Default)]
struct Terms {
    all: Vec<String>,
    any: Vec<String>,
    none: Vec<String>,
}

impl Terms {
    fn matches(&self, message: &str) -> bool {
        self.all.iter().all(|t| message.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| message.contains(t.as_str())))
            && !self.none.iter().any(|t| message.contains(t.as_str()))
    }
}

fn parse_terms(pattern: &str) -> Result<Terms, InvalidPattern> {
    let mut terms = Terms::default();
    let mut s = Scanner::new(pattern);
    // A lone `-` or `?` applies to the next term: AWS's own example is `"ERROR" - "Exiting"`.
    let mut pending: Option<char> = None;
    loop {
        s.skip_blanks();
        let Some(c) = s.peek() else { break };
        let mut prefix = pending.take();
        if prefix.is_none() && (c == '-' || c == '?') {
            s.bump();
            match s.peek() {
                None => return invalid(format!("{c} needs a term after it")),
                Some(n) if n.is_whitespace() => {
                    pending = Some(c);
                    continue;
                }
                Some(_) => prefix = Some(c),
            }
        }
        let term = if s.peek() == Some('"') {
            s.quoted()?
        } else {
            s.take_while(|c| !c.is_whitespace()).to_string()
        };
        match prefix {
            Some('-') => terms.none.push(term),
            Some(_) => terms.any.push(term),
            None => terms.all.push(term),
        }
    }
    if let Some(c) = pending {
        return invalid(format!("{c} needs a term after it"));
    }
    Ok(terms)
}

// ---------------------------------------------------------------------------------------------
// Shared pieces: a scanner, boolean expressions, values.

struct Scanner<'a> {
    src: &'a str,
    pos: usize,
    regexes: usize,
}

impl<'a> Scanner<'a> {
    fn new(src: &'a str) -> Scanner<'a> {
        Scanner {
            src,
            pos: 0,
            regexes: 0,
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_blanks(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_blanks();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Eats a keyword (case-insensitive) that is followed by a non-word character.
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_blanks();
        let rest = self.rest();
        let matches = rest
            .get(..word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
            && !rest[word.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if matches {
            self.pos += word.len();
        }
        matches
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.src[start..self.pos]
    }

    /// A `"..."` string with `\"` and `\\` escapes; the scanner stands on the opening quote.
    fn quoted(&mut self) -> Result<String, InvalidPattern> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return invalid("an unterminated quoted string"),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c @ ('"' | '\\')) => out.push(c),
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                    None => return invalid("an unterminated quoted string"),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// A `%...%` regular expression; the scanner stands on the opening `%`.
    fn regex(&mut self) -> Result<Regex, InvalidPattern> {
        self.bump();
        let body = self.take_while(|c| c != '%');
        if self.bump() != Some('%') {
            return invalid("an unterminated regular expression");
        }
        self.regexes += 1;
        if self.regexes > MAX_REGEXES {
            return invalid(format!(
                "at most {MAX_REGEXES} regular expressions are allowed in one pattern"
            ));
        }
        compile_regex(body)
    }

    fn expect_end(&mut self) -> Result<(), InvalidPattern> {
        self.skip_blanks();
        match self.peek() {
            None => Ok(()),
            Some(_) => invalid(format!("unexpected text {:?}", truncate(self.rest()))),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// `||` of `&&` of conditions, with parentheses.
#[derive(Debug)]
enum Expr<C> {
    Cond(C),
    And(Vec<Expr<C>>),
    Or(Vec<Expr<C>>),
}

impl<C> Expr<C> {
    fn eval(&self, f: &mut impl FnMut(&C) -> bool) -> bool {
        match self {
            Expr::Cond(c) => f(c),
            Expr::And(all) => all.iter().all(|e| e.eval(f)),
            Expr::Or(any) => any.iter().any(|e| e.eval(f)),
        }
    }

    fn conds(&self) -> Vec<&C> {
        match self {
            Expr::Cond(c) => vec![c],
            Expr::And(v) | Expr::Or(v) => v.iter().flat_map(Expr::conds).collect(),
        }
    }
}

fn parse_or<C>(
    s: &mut Scanner<'_>,
    depth: usize,
    cond: &mut impl FnMut(&mut Scanner<'_>) -> Result<C, InvalidPattern>,
) -> Result<Expr<C>, InvalidPattern> {
    let mut any = vec![parse_and(s, depth, cond)?];
    while s.eat("||") {
        any.push(parse_and(s, depth, cond)?);
    }
    Ok(if any.len() == 1 {
        any.pop().expect("one element")
    } else {
        Expr::Or(any)
    })
}

fn parse_and<C>(
    s: &mut Scanner<'_>,
    depth: usize,
    cond: &mut impl FnMut(&mut Scanner<'_>) -> Result<C, InvalidPattern>,
) -> Result<Expr<C>, InvalidPattern> {
    let mut all = vec![parse_unary(s, depth, cond)?];
    while s.eat("&&") {
        all.push(parse_unary(s, depth, cond)?);
    }
    Ok(if all.len() == 1 {
        all.pop().expect("one element")
    } else {
        Expr::And(all)
    })
}

fn parse_unary<C>(
    s: &mut Scanner<'_>,
    depth: usize,
    cond: &mut impl FnMut(&mut Scanner<'_>) -> Result<C, InvalidPattern>,
) -> Result<Expr<C>, InvalidPattern> {
    if s.eat("(") {
        if depth >= MAX_DEPTH {
            return invalid("parentheses nested too deeply");
        }
        let inner = parse_or(s, depth + 1, cond)?;
        if !s.eat(")") {
            return invalid("a missing )");
        }
        return Ok(inner);
    }
    s.skip_blanks();
    Ok(Expr::Cond(cond(s)?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

fn parse_op(s: &mut Scanner<'_>) -> Option<Op> {
    for (token, op) in [
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ] {
        if s.eat(token) {
            return Some(op);
        }
    }
    None
}

/// The right-hand side of a comparison.
#[derive(Debug)]
enum Operand {
    Number(f64),
    Text(Wildcard),
    Regex(Regex),
}

/// A string where a leading and a trailing `*` match anything; inner `*`s are literal, as
/// AWS documents (`Ev*ent` matches only `Ev*ent`).
#[derive(Debug, PartialEq)]
struct Wildcard {
    text: String,
    any_prefix: bool,
    any_suffix: bool,
}

impl Wildcard {
    fn new(raw: &str) -> Wildcard {
        if raw == "*" {
            return Wildcard {
                text: String::new(),
                any_prefix: true,
                any_suffix: true,
            };
        }
        let any_prefix = raw.starts_with('*');
        let body = if any_prefix { &raw[1..] } else { raw };
        let any_suffix = body.ends_with('*');
        let body = if any_suffix {
            &body[..body.len() - 1]
        } else {
            body
        };
        Wildcard {
            text: body.to_string(),
            any_prefix,
            any_suffix,
        }
    }

    fn matches(&self, value: &str) -> bool {
        match (self.any_prefix, self.any_suffix) {
            (true, true) => value.contains(self.text.as_str()),
            (true, false) => value.ends_with(self.text.as_str()),
            (false, true) => value.starts_with(self.text.as_str()),
            (false, false) => value == self.text,
        }
    }
}

/// A number as AWS writes them: sign, digits, optional fraction and exponent.
fn parse_number(raw: &str) -> Option<f64> {
    let body = raw.strip_prefix(['+', '-']).unwrap_or(raw);
    let first = body.chars().next()?;
    if !(first.is_ascii_digit() || first == '.') {
        return None;
    }
    if !body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    raw.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Ends an unquoted value (values holding these must be quoted, as AWS requires).
fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '(' | ')' | '{' | '}' | '[' | ']' | ',' | '&' | '|' | '"' | '=' | '<' | '>'
        )
}

fn parse_operand(s: &mut Scanner<'_>) -> Result<Operand, InvalidPattern> {
    s.skip_blanks();
    match s.peek() {
        None => invalid("a comparison without a value"),
        Some('"') => Ok(Operand::Text(Wildcard::new(&s.quoted()?))),
        Some('%') => Ok(Operand::Regex(s.regex()?)),
        Some(_) => {
            let raw = s.take_while(|c| !ends_value(c));
            if raw.is_empty() {
                return invalid(format!("a missing value before {:?}", truncate(s.rest())));
            }
            Ok(match parse_number(raw) {
                Some(n) => Operand::Number(n),
                None => Operand::Text(Wildcard::new(raw)),
            })
        }
    }
}

/// A comparison of one scalar against an operand. `text` is the scalar as text; `number`
/// its numeric reading, if it has one.
fn compare(op: Op, operand: &Operand, text: &str, number: Option<f64>) -> bool {
    match operand {
        Operand::Number(n) => {
            let Some(v) = number else {
                return false;
            };
            match op {
                Op::Eq => v == *n,
                Op::Ne => v != *n,
                Op::Lt => v < *n,
                Op::Le => v <= *n,
                Op::Gt => v > *n,
                Op::Ge => v >= *n,
            }
        }
        Operand::Text(w) => match op {
            Op::Eq => w.matches(text),
            Op::Ne => !w.matches(text),
            _ => false,
        },
        Operand::Regex(r) => match op {
            Op::Eq => r.is_match(text),
            Op::Ne => !r.is_match(text),
            _ => false,
        },
    }
}

fn check_operator(op: Op, operand: &Operand) -> Result<(), InvalidPattern> {
    if matches!(operand, Operand::Number(_)) || matches!(op, Op::Eq | Op::Ne) {
        Ok(())
    } else {
        invalid("only numbers can be compared with <, >, <= or >=")
    }
}

// ---------------------------------------------------------------------------------------------
// JSON patterns.

#[derive(Debug)]
enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug)]
enum JsonTest {
    Compare(Op, Operand),
    IsNull,
    NotExists,
    IsBool(bool),
}

#[derive(Debug)]
struct JsonCond {
    path: Vec<Step>,
    test: JsonTest,
}

impl JsonCond {
    fn eval(&self, doc: &Value) -> bool {
        let mut at = Some(doc);
        for step in &self.path {
            at = at.and_then(|v| match step {
                Step::Key(k) => v.as_object().and_then(|o| o.get(k)),
                Step::Index(i) => v.as_array().and_then(|a| a.get(*i)),
            });
        }
        match (&self.test, at) {
            (JsonTest::NotExists, found) => found.is_none(),
            (JsonTest::IsNull, found) => found.is_some_and(Value::is_null),
            (JsonTest::IsBool(b), found) => found.and_then(Value::as_bool) == Some(*b),
            // Comparisons apply to scalars only: AWS documents that both `{$.users = 1}` and
            // `{$.users != 1}` fail when users is an array, and a missing value matches neither.
            (JsonTest::Compare(op, operand), Some(v)) => match v {
                Value::String(s) => compare(*op, operand, s, parse_number(s)),
                Value::Number(n) => compare(*op, operand, &n.to_string(), n.as_f64()),
                Value::Bool(b) => compare(*op, operand, if *b { "true" } else { "false" }, None),
                Value::Null | Value::Array(_) | Value::Object(_) => false,
            },
            (JsonTest::Compare(..), None) => false,
        }
    }
}

fn parse_json(pattern: &str) -> Result<Expr<JsonCond>, InvalidPattern> {
    let mut s = Scanner::new(pattern);
    s.eat("{");
    let expr = parse_or(&mut s, 0, &mut parse_json_cond)?;
    if !s.eat("}") {
        return invalid("a JSON pattern must end with }");
    }
    s.expect_end()?;
    Ok(expr)
}

/// A selector `$.a.b[0]`: the steps after `$`.
fn parse_json_path(s: &mut Scanner<'_>) -> Result<Vec<Step>, InvalidPattern> {
    if s.bump() != Some('$') {
        return invalid("a JSON selector must start with $");
    }
    let mut path = Vec::new();
    loop {
        match s.peek() {
            Some('.') => {
                s.bump();
                let key = s.take_while(|c| c.is_alphanumeric() || c == '_' || c == '-');
                if key.is_empty() {
                    return invalid("an empty property name in a selector");
                }
                path.push(Step::Key(key.to_string()));
            }
            Some('[') => {
                s.bump();
                let digits = s.take_while(|c| c.is_ascii_digit());
                let index = digits
                    .parse::<usize>()
                    .or_else(|_| invalid("an array index must be a number"))?;
                if s.bump() != Some(']') {
                    return invalid("a missing ] in a selector");
                }
                path.push(Step::Index(index));
            }
            _ => break,
        }
    }
    if path.is_empty() {
        return invalid("a selector must name a property, as in $.field");
    }
    Ok(path)
}

fn parse_json_cond(s: &mut Scanner<'_>) -> Result<JsonCond, InvalidPattern> {
    let path = parse_json_path(s)?;
    let test = if s.eat_word("IS") {
        if s.eat_word("NULL") {
            JsonTest::IsNull
        } else if s.eat_word("TRUE") {
            JsonTest::IsBool(true)
        } else if s.eat_word("FALSE") {
            JsonTest::IsBool(false)
        } else {
            return invalid("IS must be followed by NULL, TRUE or FALSE");
        }
    } else if s.eat_word("NOT") {
        if !s.eat_word("EXISTS") {
            return invalid("NOT must be followed by EXISTS");
        }
        JsonTest::NotExists
    } else {
        let Some(op) = parse_op(s) else {
            return invalid(format!(
                "a selector must be followed by an operator, not {:?}",
                truncate(s.rest())
            ));
        };
        let operand = parse_operand(s)?;
        check_operator(op, &operand)?;
        JsonTest::Compare(op, operand)
    };
    Ok(JsonCond { path, test })
}

// ---------------------------------------------------------------------------------------------
// Space-delimited patterns.

#[derive(Debug)]
struct FieldCond {
    name: String,
    test: Option<(Op, Operand)>,
}

#[derive(Debug)]
enum Slot {
    Ellipsis,
    Field { name: String, expr: Expr<FieldCond> },
}

#[derive(Debug)]
struct Delimited {
    slots: Vec<Slot>,
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-' || c == '$'
}

fn parse_delimited(pattern: &str) -> Result<Delimited, InvalidPattern> {
    let mut s = Scanner::new(pattern);
    s.eat("[");
    let mut slots = Vec::new();
    loop {
        s.skip_blanks();
        match s.peek() {
            None => return invalid("a space-delimited pattern must end with ]"),
            Some(']') => {
                s.bump();
                break;
            }
            Some(',') => {
                // AWS's own example ends with a trailing comma: empty slots are skipped.
                s.bump();
                continue;
            }
            _ => {}
        }
        if s.eat("...") {
            slots.push(Slot::Ellipsis);
        } else {
            let expr = parse_or(&mut s, 0, &mut parse_field_cond)?;
            let name = expr
                .conds()
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_default();
            slots.push(Slot::Field { name, expr });
        }
        s.skip_blanks();
        match s.peek() {
            Some(',') => {
                s.bump();
            }
            Some(']') => {}
            None => return invalid("a space-delimited pattern must end with ]"),
            Some(_) => return invalid(format!("unexpected text {:?}", truncate(s.rest()))),
        }
    }
    s.expect_end()?;
    if slots.is_empty() {
        return invalid("a space-delimited pattern needs at least one field");
    }
    Ok(Delimited { slots })
}

fn parse_field_cond(s: &mut Scanner<'_>) -> Result<FieldCond, InvalidPattern> {
    let name = s.take_while(is_name_char);
    if name.is_empty() {
        return invalid(format!("a field name expected at {:?}", truncate(s.rest())));
    }
    let name = name.to_string();
    let save = s.pos;
    let test = match parse_op(s) {
        Some(op) => {
            let operand = parse_operand(s)?;
            check_operator(op, &operand)?;
            Some((op, operand))
        }
        None => {
            s.pos = save;
            None
        }
    };
    Ok(FieldCond { name, test })
}

/// Splits a message into space-delimited fields; `"..."` and `[...]` make one field each,
/// without their quotes or brackets.
fn split_fields(message: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut rest = message;
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.chars().next() else {
            return fields;
        };
        let close = match first {
            '"' => Some('"'),
            '[' => Some(']'),
            _ => None,
        };
        match close {
            Some(close) => {
                let body = &rest[1..];
                match body.find(close) {
                    Some(end) => {
                        fields.push(&body[..end]);
                        rest = &body[end + 1..];
                    }
                    None => {
                        fields.push(body);
                        return fields;
                    }
                }
            }
            None => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                fields.push(&rest[..end]);
                rest = &rest[end..];
            }
        }
    }
}

impl Delimited {
    /// The named slots' fields of a message with one alignment (at most one `...`).
    fn bind(&self, message: &str) -> Option<Vec<(String, String)>> {
        let fields = split_fields(message);
        let ellipses = self
            .slots
            .iter()
            .filter(|s| matches!(s, Slot::Ellipsis))
            .count();
        let named = self.slots.len() - ellipses;
        if ellipses > 1 || fields.len() < named {
            return None;
        }
        let spare = fields.len() - named;
        let mut at = 0;
        let mut out = Vec::with_capacity(named);
        for slot in &self.slots {
            match slot {
                Slot::Ellipsis => at += spare,
                Slot::Field { name, .. } => {
                    let key = if name.starts_with('$') {
                        name.clone()
                    } else {
                        format!("${name}")
                    };
                    out.push((key, fields[at].to_string()));
                    at += 1;
                }
            }
        }
        Some(out)
    }

    fn matches(&self, message: &str) -> bool {
        let fields = split_fields(message);
        let ellipses = self
            .slots
            .iter()
            .filter(|s| matches!(s, Slot::Ellipsis))
            .count();
        let named = self.slots.len() - ellipses;
        if fields.len() < named || (ellipses == 0 && fields.len() != named) {
            return false;
        }
        if ellipses <= 1 {
            // One alignment only: bind every name, so a slot's conditions may name others.
            let spare = fields.len() - named;
            let mut bound: Vec<(&str, &str)> = Vec::with_capacity(named);
            let mut at = 0;
            for slot in &self.slots {
                match slot {
                    Slot::Ellipsis => at += spare,
                    Slot::Field { name, .. } => {
                        bound.push((name.as_str(), fields[at]));
                        at += 1;
                    }
                }
            }
            return self.slots.iter().all(|slot| match slot {
                Slot::Ellipsis => true,
                Slot::Field { expr, .. } => expr.eval(&mut |c: &FieldCond| {
                    let value = bound.iter().rev().find(|(n, _)| *n == c.name);
                    field_test(c, value.map(|(_, v)| *v))
                }),
            });
        }
        // Several ellipses: many alignments, found by dynamic programming over (slot, field);
        // each slot's conditions then see only its own field.
        let n = fields.len();
        let mut reach = vec![false; n + 1];
        reach[0] = true;
        for slot in &self.slots {
            let mut next = vec![false; n + 1];
            match slot {
                Slot::Ellipsis => {
                    let mut any = false;
                    for j in 0..=n {
                        any |= reach[j];
                        next[j] = any;
                    }
                }
                Slot::Field { name, expr } => {
                    for j in 0..n {
                        if reach[j]
                            && expr.eval(&mut |c: &FieldCond| {
                                field_test(c, (c.name == *name).then_some(fields[j]))
                            })
                        {
                            next[j + 1] = true;
                        }
                    }
                }
            }
            reach = next;
        }
        reach[n]
    }
}

fn field_test(cond: &FieldCond, value: Option<&str>) -> bool {
    match (&cond.test, value) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some((op, operand)), Some(v)) => compare(*op, operand, v, parse_number(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APACHE_404: &str =
        r#"127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 404 1534"#;
    const APACHE_200: &str =
        r#"127.0.0.1 - frank [10/Oct/2000:13:35:22 -0700] "GET /apache_pb.gif HTTP/1.0" 200 5324"#;
    const DOC: &str = r#"{"eventType": "UpdateTrail", "sourceIPAddress": "111.111.111.111",
        "arrayKey": ["value", "another value"], "objectList": [{"name": "a", "id": 1},
        {"name": "b", "id": 2}], "SomeObject": null, "ThisFlag": true, "latency": 550,
        "user": {"id": 1, "email": "John.Stiles@example.com"},
        "coordinates": [[0, 1, 2], [4, 5, 6]], "code": "404", "ratio": 0.25}"#;

    /// (pattern, message, expected match)
    const CASES: &[(&str, &str, bool)] = &[
        // Everything.
        ("", "anything", true),
        ("   ", "anything", true),
        // Terms: case-sensitive substrings, all must occur.
        ("ERROR", "[ERROR] A fatal exception has occurred", true),
        ("ERROR", "Exiting with ERRORCODE: -1", true),
        ("ERROR", "error: lower case", false),
        ("ERROR Exception", "[ERROR] Unhandled Exception", true),
        ("ERROR Exception", "[ERROR] Unhandled exception", false),
        (
            "Failed to process the request",
            "[WARN] Failed to process the request",
            true,
        ),
        ("\"ERROR 401\"", "[ERROR 401] UNAUTHORIZED", true),
        ("\"ERROR 401\"", "[ERROR 400] 401", false),
        ("\"\"", "anything", true),
        // OR terms.
        ("?ERROR ?WARN", "WARN message", true),
        ("?ERROR ?WARN", "INFO message", false),
        ("?\"ERROR 1\" ?WARN", "got ERROR 1", true),
        // Exclusions, including AWS's own spaced form.
        ("ERROR -WARN", "ERROR message", true),
        ("ERROR -WARN", "ERROR WARN message", false),
        (
            "\"ERROR\" - \"Exiting\"",
            "Exiting with ERRORCODE: -1",
            false,
        ),
        ("\"ERROR\" - \"Exiting\"", "[ERROR] crash", true),
        (
            "-\"INVALID ARGUMENTS\"",
            "[ERROR 420] INVALID ARGUMENTS",
            false,
        ),
        (
            "-\"INVALID ARGUMENTS\"",
            "[ERROR 419] MISSING ARGUMENTS",
            true,
        ),
        // Regex.
        ("%AUTHORIZED%", "[ERROR 401] UNAUTHORIZED REQUEST", true),
        ("%^AUTHORIZED%", "[ERROR 401] UNAUTHORIZED REQUEST", false),
        ("%colou?r%", "the colour red", true),
        ("%[Ee]rror|[Ff]ail%", "it failed: Fail", true),
        (
            "%\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}%",
            "from 10.0.0.12 now",
            true,
        ),
        (
            "%\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}%",
            "from 10.0.0 now",
            false,
        ),
        // JSON: strings, wildcards, arrays, objects.
        ("{ $.eventType = \"UpdateTrail\" }", DOC, true),
        ("{ $.eventType = UpdateTrail }", DOC, true),
        ("{$.eventType=\"Update\"}", DOC, false),
        ("{ $.eventType = Update* }", DOC, true),
        ("{ $.eventType = *Trail }", DOC, true),
        ("{ $.eventType = *date* }", DOC, true),
        ("{ $.eventType = Up*Trail }", DOC, false),
        ("{ $.eventType = * }", DOC, true),
        ("{ $.missing = * }", DOC, false),
        ("{ $.eventType != \"UpdateTrail\" }", DOC, false),
        ("{ $.eventType != \"CreateTrail\" }", DOC, true),
        ("{ $.missing != \"x\" }", DOC, false),
        ("{ $.sourceIPAddress != 123.123.* }", DOC, true),
        ("{ $.sourceIPAddress = 111.111.* }", DOC, true),
        ("{ $.arrayKey[0] = \"value\" }", DOC, true),
        ("{ $.arrayKey[1] = \"another value\" }", DOC, true),
        ("{ $.arrayKey[2] = \"value\" }", DOC, false),
        ("{ $.arrayKey = \"value\" }", DOC, false),
        ("{ $.arrayKey != \"value\" }", DOC, false),
        ("{ $.objectList[1].id = 2 }", DOC, true),
        ("{ $.objectList[1].name = b }", DOC, true),
        ("{ $.coordinates[1][2] = 6 }", DOC, true),
        ("{ $.user.email = \"John.Stiles@example.com\" }", DOC, true),
        // JSON: null, existence, booleans.
        ("{ $.SomeObject IS NULL }", DOC, true),
        ("{ $.ThisFlag IS NULL }", DOC, false),
        ("{ $.missing IS NULL }", DOC, false),
        ("{ $.SomeOtherObject NOT EXISTS }", DOC, true),
        ("{ $.SomeObject NOT EXISTS }", DOC, false),
        ("{ $.ThisFlag IS TRUE }", DOC, true),
        ("{ $.ThisFlag IS FALSE }", DOC, false),
        ("{ $.ThisFlag is true }", DOC, true),
        // JSON: numbers.
        ("{ $.latency >= 500 }", DOC, true),
        ("{ $.latency > 550 }", DOC, false),
        ("{ $.latency < 10e3 }", DOC, true),
        ("{ $.latency <= 550.0 }", DOC, true),
        ("{ $.latency = 550 }", DOC, true),
        ("{ $.latency != 550 }", DOC, false),
        ("{ $.latency > +500 }", DOC, true),
        ("{ $.ratio < 10e-1 }", DOC, true),
        ("{ $.latency = 55* }", DOC, true),
        ("{ $.code = 404 }", DOC, true),
        ("{ $.eventType > 3 }", DOC, false),
        // JSON: compound conditions, && before ||.
        (
            "{ ($.user.id = 1) && ($.objectList[0].name = \"a\") }",
            DOC,
            true,
        ),
        (
            "{ ($.user.id = 2 && $.objectList[0].name = \"a\") || $.arrayKey[0] = \"x\" }",
            DOC,
            false,
        ),
        (
            "{ $.user.id = 1 || $.coordinates[0][1] = 7 && $.arrayKey[0] = x }",
            DOC,
            true,
        ),
        (
            "{ ($.user.id = 1 || $.coordinates[0][1] = 7) && $.arrayKey[0] = x }",
            DOC,
            false,
        ),
        // JSON: regex values.
        ("{ $.eventType = %Update.*% }", DOC, true),
        ("{ $.eventType = %^Trail% }", DOC, false),
        ("{ $.eventType != %^Create% }", DOC, true),
        // JSON against a message that is not JSON.
        ("{ $.a = 1 }", "not json", false),
        // Space-delimited.
        (
            "[ip, user, username, timestamp, request, status_code, bytes]",
            APACHE_404,
            true,
        ),
        (
            "[ip, user, username, timestamp, request, status_code]",
            APACHE_404,
            false,
        ),
        ("[..., status_code, bytes]", APACHE_404, true),
        ("[ip, user, ..., status_code, bytes]", APACHE_404, true),
        ("[ip, user, ...]", APACHE_404, true),
        (
            "[ip, user, username, timestamp, request, status_code, bytes > 1000]",
            APACHE_404,
            true,
        ),
        (
            "[ip, user, username, timestamp, request, status_code, bytes > 2000]",
            APACHE_404,
            false,
        ),
        (
            "[ip, user, username, timestamp, request, status_code = 200, bytes]",
            APACHE_200,
            true,
        ),
        (
            "[ip, user, username, timestamp, request, status_code = 200, bytes]",
            APACHE_404,
            false,
        ),
        (
            "[ip, user, username, timestamp, request, status_code = 4*, bytes]",
            APACHE_404,
            true,
        ),
        (
            "[ip, user, username, timestamp, request = *html*, status_code = 4*, bytes]",
            APACHE_404,
            true,
        ),
        (
            "[ip, user, username, timestamp, request = *html*, status_code, bytes]",
            APACHE_200,
            false,
        ),
        (
            "[..., request = *.html*, status_code = 4*,]",
            APACHE_404,
            false,
        ),
        (
            "[..., request = *.html*, status_code = 4*, bytes]",
            APACHE_404,
            true,
        ),
        (
            "[ip, ..., status_code = 4* && status_code != 403, bytes]",
            APACHE_404,
            true,
        ),
        (
            "[ip, ..., status_code = 4* && status_code != 404, bytes]",
            APACHE_404,
            false,
        ),
        ("[ip = 127.0.0.1, ...]", APACHE_404, true),
        ("[ip, user, username = \"frank\", ...]", APACHE_404, true),
        (
            "[..., timestamp = *Oct*, request, status_code, bytes]",
            APACHE_404,
            true,
        ),
        ("[w1=ERROR, w2]", "ERROR message", true),
        ("[w1=ERROR, w2]", "WARN message", false),
        ("[w1=ERROR || w1=WARN, w2]", "WARN message", true),
        ("[w1!=ERROR && w1!=WARN, w2]", "INFO message", true),
        ("[w1!=ERROR && w1!=WARN, w2]", "WARN message", false),
        ("[w1 = %^ER%, w2]", "ERROR message", true),
        ("[a, ..., b = x, ..., c]", "1 2 x 3 4", true),
        ("[a, ..., b = x, ..., c]", "1 2 y 3 4", false),
        ("[a, ..., b = x, ..., c]", "1 x", false),
    ];

    #[test]
    fn table() {
        let mut failures = Vec::new();
        for (pattern, message, expected) in CASES {
            match FilterPattern::parse(pattern) {
                Ok(p) if p.matches(message) == *expected => {}
                Ok(_) => failures.push(format!("{pattern:?} on {message:?}: expected {expected}")),
                Err(e) => failures.push(format!("{pattern:?}: {e}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    const INVALID: &[&str] = &[
        "\"unterminated",
        "ERROR -",
        "{ $.a = 1",
        "{ a = 1 }",
        "{ $ = 1 }",
        "{ $.a = }",
        "{ $.a == 1 }",
        "{ $.a == }",
        "{ $.a > abc }",
        "{ $.a IS MAYBE }",
        "{ $.a NOT THERE }",
        "{ $.a[x] = 1 }",
        "{ ($.a = 1 }",
        "{ $.a = 1 } trailing",
        "{ $.a = %(x)% }",
        "{ $.a = %x% || $.b = %y% || $.c = %z% }",
        "[a, b",
        "[a > x, b]",
        "[a = , b]",
        "[]",
        "%%",
        "%(group)%",
        "%something!%",
        "%unclosed[%",
    ];

    #[test]
    fn invalid_patterns_are_refused() {
        let accepted: Vec<_> = INVALID
            .iter()
            .filter(|p| FilterPattern::parse(p).is_ok())
            .collect();
        assert!(accepted.is_empty(), "accepted: {accepted:?}");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{{ {}$.a = 1{} }}", "(".repeat(200), ")".repeat(200));
        assert!(FilterPattern::parse(&deep).is_err());
    }

    #[test]
    fn fields_split_like_aws() {
        assert_eq!(
            split_fields(APACHE_404),
            vec![
                "127.0.0.1",
                "-",
                "frank",
                "10/Oct/2000:13:25:15 -0700",
                "GET /index.html HTTP/1.0",
                "404",
                "1534"
            ]
        );
        assert_eq!(split_fields("  a   \"b c"), vec!["a", "b c"]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_patterns_never_panic(pattern in ".{0,80}", message in ".{0,80}") {
            if let Ok(p) = FilterPattern::parse(&pattern) {
                let _ = p.matches(&message);
            }
        }

        #[test]
        fn pattern_shaped_input_never_panics(
            pattern in r#"[\[\]{}()$.a-c0-9 =!<>&|,"%*?\-]{0,60}"#,
            message in r#"[\[\]{}"a-c0-9 :,.]{0,60}"#,
        ) {
            if let Ok(p) = FilterPattern::parse(&pattern) {
                let _ = p.matches(&message);
            }
        }
    }

    #[test]
    fn metric_values_and_extracted_fields() {
        let p = FilterPattern::parse("[ip, user, ..., status = 4*, bytes]").unwrap();
        let line = "10.0.0.1 alice GET /x 404 512";
        assert_eq!(
            p.extracted_values(line),
            vec![
                ("$ip".to_string(), "10.0.0.1".to_string()),
                ("$user".to_string(), "alice".to_string()),
                ("$status".to_string(), "404".to_string()),
                ("$bytes".to_string(), "512".to_string()),
            ]
        );
        assert_eq!(p.value(line, "$bytes").as_deref(), Some("512"));
        assert_eq!(p.value("10.0.0.1 alice GET /x 200 512", "$bytes"), None);
        assert!(p.check_metric_value("$bytes").is_ok());
        assert!(p.check_metric_value("$nope").is_err());
        assert!(p.check_metric_value("1").is_ok());
        assert!(p.check_metric_value("$.a").is_err());

        let j = FilterPattern::parse("{ $.latency > 100 }").unwrap();
        assert_eq!(
            j.value(r#"{"latency": 250, "a": {"b": [7]}}"#, "$.latency")
                .as_deref(),
            Some("250")
        );
        assert_eq!(
            j.value(r#"{"latency": 250, "a": {"b": [7]}}"#, "$.a.b[0]")
                .as_deref(),
            Some("7")
        );
        assert_eq!(j.value(r#"{"latency": 50}"#, "$.latency"), None);
        assert!(j.extracted_values(r#"{"latency": 250}"#).is_empty());
        assert!(j.check_metric_value("$.latency").is_ok());
        assert!(j.check_metric_value("$.").is_err());
    }
}
