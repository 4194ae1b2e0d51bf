//! A small subset of the Velocity Template Language as API Gateway's mapping templates use it.
//!
//! Supported: references `$x.y`, `${x.y}`, quiet `$!x` / `$!{x}`; `$input.body`,
//! `$input.json('$.path')`, `$input.path('$.path')`, `$input.params()` and
//! `$input.params('name')` (path, then query string, then header); `$context.*` and
//! `$stageVariables.*` property chains; `$util.escapeJavaScript`, `$util.urlEncode`,
//! `$util.urlDecode`, `$util.base64Encode`, `$util.base64Decode`, `$util.parseJson`; the
//! directives `#set($v = expr)` and `#if(cond) ... #elseif(cond) ... #else ... #end` with `==`,
//! `!=`, `&&`, `||`, `!` and truthiness; `#foreach($x in $list)` over lists and map values with
//! `$foreach.hasNext`/`index`/`count` and `$velocityCount`; `.get()`, `.size()`, `.keySet()`
//! and `.isEmpty()` on maps and lists. Not supported: macros, arithmetic, other Java methods on
//! strings and maps. A map or list renders as JSON, where Velocity would print
//! Java's `{a=b}`. A reference that resolves to nothing renders as its own text (`$x`), as
//! Velocity does, or as nothing when quiet.
//!
//! JSONPath in `$input.json`/`$input.path`: `$`, `.name`, `['name']` and `[index]`.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Map, Value, json};

/// What a template sees.
#[derive(Debug, Default, Clone)]
pub struct Input {
    /// The request (or integration response) body.
    pub body: String,
    pub path_params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// `$context`, an object.
    pub context: Value,
    pub stage_variables: Value,
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtlError(pub String);

/// Renders `template` against `input`.
pub fn render(template: &str, input: &Input) -> Result<String, VtlError> {
    let nodes = Parser {
        s: template.as_bytes(),
        src: template,
        i: 0,
    }
    .nodes(&[])?
    .0;
    let mut r = Renderer {
        budget: MAX_ITERATIONS,
        input,
        vars: HashMap::new(),
        out: String::new(),
    };
    r.run(&nodes);
    Ok(r.out)
}

#[derive(Debug, Clone)]
enum Expr {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    Ref(Ref),
    Not(Box<Expr>),
    Bin(Box<Expr>, &'static str, Box<Expr>),
}

#[derive(Debug, Clone)]
struct Ref {
    root: String,
    /// `.name` (args `None`) or `.name(args)`.
    chain: Vec<(String, Option<Vec<Expr>>)>,
    quiet: bool,
    text: String,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Ref(Ref),
    Set(String, Expr),
    If(Vec<(Expr, Vec<Node>)>, Vec<Node>),
    /// `#foreach($var in expr) body #end`.
    Foreach(String, Expr, Vec<Node>),
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn starts(&self, w: &str) -> bool {
        self.s[self.i..].starts_with(w.as_bytes())
    }

    fn err(&self, m: &str) -> VtlError {
        VtlError(format!("{m} at offset {}", self.i))
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn ident(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_ident) {
            self.i += 1;
        }
        self.src[start..self.i].to_string()
    }

    /// Nodes up to one of `stops` (a directive name such as `#end`), which is returned unread.
    fn nodes(&mut self, stops: &[&str]) -> Result<(Vec<Node>, Option<String>), VtlError> {
        let mut out = Vec::new();
        let mut text = String::new();
        while self.i < self.s.len() {
            if self.starts("##") {
                while self.peek().is_some_and(|c| c != b'\n') {
                    self.i += 1;
                }
                continue;
            }
            if self.peek() == Some(b'#') {
                let name = directive_name(&self.src[self.i + 1..]);
                let stop = stops.iter().find(|s| **s == name);
                if let Some(stop) = stop {
                    if !text.is_empty() {
                        out.push(Node::Text(std::mem::take(&mut text)));
                    }
                    return Ok((out, Some(stop.to_string())));
                }
                match name.as_str() {
                    "set" => {
                        flush(&mut out, &mut text);
                        self.skip_directive();
                        self.expect(b'(')?;
                        self.ws();
                        if self.peek() != Some(b'$') {
                            return Err(self.err("#set needs a $variable"));
                        }
                        self.i += 1;
                        let name = self.ident();
                        self.ws();
                        self.expect(b'=')?;
                        let e = self.expr()?;
                        self.ws();
                        self.expect(b')')?;
                        out.push(Node::Set(name, e));
                        continue;
                    }
                    "if" => {
                        flush(&mut out, &mut text);
                        self.skip_directive();
                        out.push(self.if_chain()?);
                        continue;
                    }
                    "foreach" => {
                        flush(&mut out, &mut text);
                        self.skip_directive();
                        self.expect(b'(')?;
                        self.ws();
                        if self.peek() != Some(b'$') {
                            return Err(self.err("#foreach needs a $variable"));
                        }
                        self.i += 1;
                        let var = self.ident();
                        self.ws();
                        if !self.starts("in") {
                            return Err(self.err("expected 'in'"));
                        }
                        self.i += 2;
                        let list = self.expr()?;
                        self.expect(b')')?;
                        let (body, _) = self.nodes(&["end"])?;
                        self.skip_directive();
                        out.push(Node::Foreach(var, list, body));
                        continue;
                    }
                    "macro" | "define" | "parse" | "include" | "evaluate" => {
                        return Err(self.err(&format!(
                            "#{name} is not in the template subset tsumiki supports"
                        )));
                    }
                    _ => {}
                }
            }
            if self.peek() == Some(b'$')
                && let Some(r) = self.reference()?
            {
                flush(&mut out, &mut text);
                out.push(Node::Ref(r));
                continue;
            }
            let c = self.src[self.i..].chars().next().unwrap_or_default();
            text.push(c);
            self.i += c.len_utf8();
        }
        flush(&mut out, &mut text);
        if stops.is_empty() {
            Ok((out, None))
        } else {
            Err(self.err("#if without #end"))
        }
    }

    fn if_chain(&mut self) -> Result<Node, VtlError> {
        let mut branches = Vec::new();
        let mut otherwise = Vec::new();
        self.ws();
        self.expect(b'(')?;
        let mut cond = self.expr()?;
        self.ws();
        self.expect(b')')?;
        loop {
            let (body, stop) = self.nodes(&["elseif", "else", "end"])?;
            branches.push((cond.clone(), body));
            match stop.as_deref() {
                Some("elseif") => {
                    self.skip_directive();
                    self.ws();
                    self.expect(b'(')?;
                    cond = self.expr()?;
                    self.ws();
                    self.expect(b')')?;
                }
                Some("else") => {
                    self.skip_directive();
                    let (body, stop) = self.nodes(&["end"])?;
                    otherwise = body;
                    if stop.is_some() {
                        self.skip_directive();
                    }
                    break;
                }
                _ => {
                    self.skip_directive();
                    break;
                }
            }
        }
        Ok(Node::If(branches, otherwise))
    }

    /// Past `#name` or `#{name}` at the cursor.
    fn skip_directive(&mut self) {
        self.i += 1;
        let braced = self.peek() == Some(b'{');
        if braced {
            self.i += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        if braced && self.peek() == Some(b'}') {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), VtlError> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    /// A `$reference` at the cursor, or `None` (and the cursor unmoved) when `$` is plain text.
    fn reference(&mut self) -> Result<Option<Ref>, VtlError> {
        let start = self.i;
        self.i += 1;
        let quiet = self.peek() == Some(b'!');
        if quiet {
            self.i += 1;
        }
        let braced = self.peek() == Some(b'{');
        if braced {
            self.i += 1;
        }
        if !self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        {
            self.i = start;
            return Ok(None);
        }
        let root = self.ident();
        let mut chain = Vec::new();
        loop {
            if self.peek() == Some(b'.')
                && self
                    .s
                    .get(self.i + 1)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
            {
                self.i += 1;
                let name = self.ident();
                let args = if self.peek() == Some(b'(') {
                    self.i += 1;
                    let mut args = Vec::new();
                    self.ws();
                    if self.peek() == Some(b')') {
                        self.i += 1;
                    } else {
                        loop {
                            args.push(self.expr()?);
                            self.ws();
                            match self.peek() {
                                Some(b',') => self.i += 1,
                                Some(b')') => {
                                    self.i += 1;
                                    break;
                                }
                                _ => return Err(self.err("expected ',' or ')'")),
                            }
                        }
                    }
                    Some(args)
                } else {
                    None
                };
                chain.push((name, args));
            } else {
                break;
            }
        }
        if braced {
            if self.peek() != Some(b'}') {
                return Err(self.err("expected '}'"));
            }
            self.i += 1;
        }
        Ok(Some(Ref {
            root,
            chain,
            quiet,
            text: self.src[start..self.i].to_string(),
        }))
    }

    fn expr(&mut self) -> Result<Expr, VtlError> {
        let mut left = self.and_expr()?;
        loop {
            self.ws();
            if self.starts("||") {
                self.i += 2;
                let right = self.and_expr()?;
                left = Expr::Bin(Box::new(left), "||", Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn and_expr(&mut self) -> Result<Expr, VtlError> {
        let mut left = self.cmp_expr()?;
        loop {
            self.ws();
            if self.starts("&&") {
                self.i += 2;
                let right = self.cmp_expr()?;
                left = Expr::Bin(Box::new(left), "&&", Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn cmp_expr(&mut self) -> Result<Expr, VtlError> {
        let left = self.unary()?;
        self.ws();
        for op in ["==", "!="] {
            if self.starts(op) {
                self.i += 2;
                let right = self.unary()?;
                return Ok(Expr::Bin(Box::new(left), op, Box::new(right)));
            }
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, VtlError> {
        self.ws();
        match self.peek() {
            Some(b'!') => {
                self.i += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(b'(') => {
                self.i += 1;
                let e = self.expr()?;
                self.expect(b')')?;
                Ok(e)
            }
            Some(q @ (b'\'' | b'"')) => {
                self.i += 1;
                let start = self.i;
                while self.peek().is_some_and(|c| c != q) {
                    self.i += 1;
                }
                if self.peek().is_none() {
                    return Err(self.err("unterminated string"));
                }
                let s = self.src[start..self.i].to_string();
                self.i += 1;
                Ok(Expr::Str(s))
            }
            Some(b'$') => match self.reference()? {
                Some(r) => Ok(Expr::Ref(r)),
                None => Err(self.err("expected a reference")),
            },
            Some(c) if c.is_ascii_digit() || c == b'-' => {
                let start = self.i;
                self.i += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'.') {
                    self.i += 1;
                }
                self.src[start..self.i]
                    .parse()
                    .map(Expr::Num)
                    .map_err(|_| self.err("bad number"))
            }
            _ => {
                let word = self.ident();
                match word.as_str() {
                    "true" => Ok(Expr::Bool(true)),
                    "false" => Ok(Expr::Bool(false)),
                    "null" => Ok(Expr::Null),
                    _ => Err(self.err("expected a value")),
                }
            }
        }
    }
}

fn flush(out: &mut Vec<Node>, text: &mut String) {
    if !text.is_empty() {
        out.push(Node::Text(std::mem::take(text)));
    }
}

/// `set` for `#set(`, `end` for `#end` or `#{end}`, `else` for `#else`.
fn directive_name(rest: &str) -> String {
    let rest = rest.strip_prefix('{').unwrap_or(rest);
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
}

/// Velocity's default `directive.foreach.maxloops` is unbounded; a template is user input, so
/// loops are capped, in all (nested loops multiply).
const MAX_ITERATIONS: usize = 100_000;

struct Renderer<'a> {
    /// Loop iterations left for this render.
    budget: usize,
    input: &'a Input,
    vars: HashMap<String, Value>,
    out: String,
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        _ => true,
    }
}

fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Renderer<'_> {
    fn run(&mut self, nodes: &[Node]) {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Ref(r) => match self.resolve(r) {
                    Value::Null if r.quiet => {}
                    Value::Null => self.out.push_str(&r.text),
                    v => self.out.push_str(&to_text(&v)),
                },
                Node::Set(name, e) => {
                    let v = self.eval(e);
                    self.vars.insert(name.clone(), v);
                }
                Node::If(branches, otherwise) => {
                    let chosen = branches
                        .iter()
                        .find(|(c, _)| truthy(&self.eval(c)))
                        .map(|(_, b)| b)
                        .unwrap_or(otherwise);
                    self.run(chosen);
                }
                Node::Foreach(var, list, body) => {
                    let items: Vec<Value> = match self.eval(list) {
                        Value::Array(a) => a,
                        Value::Object(o) => o.into_values().collect(),
                        _ => Vec::new(),
                    };
                    let saved = (self.vars.remove(var), self.vars.remove("foreach"));
                    let n = items.len();
                    for (i, item) in items.into_iter().enumerate() {
                        if self.budget == 0 {
                            break;
                        }
                        self.budget -= 1;
                        self.vars.insert(var.clone(), item);
                        self.vars.insert(
                            "foreach".into(),
                            json!({"index": i, "count": i + 1, "hasNext": i + 1 < n, "first": i == 0, "last": i + 1 == n}),
                        );
                        self.vars.insert("velocityCount".into(), json!(i + 1));
                        self.run(body);
                    }
                    for (k, v) in [(var.as_str(), saved.0), ("foreach", saved.1)] {
                        match v {
                            Some(v) => self.vars.insert(k.to_string(), v),
                            None => self.vars.remove(k),
                        };
                    }
                }
            }
        }
    }

    fn eval(&self, e: &Expr) -> Value {
        match e {
            Expr::Str(s) => json!(s),
            Expr::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => json!(*n as i64),
            Expr::Num(n) => json!(n),
            Expr::Bool(b) => json!(b),
            Expr::Null => Value::Null,
            Expr::Ref(r) => self.resolve(r),
            Expr::Not(x) => json!(!truthy(&self.eval(x))),
            Expr::Bin(l, op, r) => {
                let (a, b) = (self.eval(l), self.eval(r));
                match *op {
                    "&&" => json!(truthy(&a) && truthy(&b)),
                    "||" => json!(truthy(&a) || truthy(&b)),
                    "==" => json!(loosely_equal(&a, &b)),
                    _ => json!(!loosely_equal(&a, &b)),
                }
            }
        }
    }

    fn resolve(&self, r: &Ref) -> Value {
        let mut calls = r.chain.iter();
        let mut cur = match r.root.as_str() {
            "input" => match calls.next() {
                Some((name, args)) => self.input_call(name, args.as_deref()),
                None => Value::Null,
            },
            "util" => match calls.next() {
                Some((name, Some(args))) => {
                    let arg = args.first().map(|a| self.eval(a)).unwrap_or(Value::Null);
                    util_call(name, &arg)
                }
                _ => Value::Null,
            },
            "context" => self.input.context.clone(),
            "stageVariables" => self.input.stage_variables.clone(),
            other => self.vars.get(other).cloned().unwrap_or(Value::Null),
        };
        for (name, args) in calls {
            cur = match args {
                None => cur.get(name).cloned().unwrap_or(Value::Null),
                // `.get('k')` and `.size()` on maps and lists, as templates commonly use.
                Some(args) => match name.as_str() {
                    "get" => {
                        let k = args.first().map(|a| self.eval(a)).unwrap_or(Value::Null);
                        match (&cur, &k) {
                            (Value::Object(o), Value::String(k)) => {
                                o.get(k).cloned().unwrap_or(Value::Null)
                            }
                            (Value::Array(a), Value::Number(n)) => n
                                .as_u64()
                                .and_then(|i| a.get(i as usize).cloned())
                                .unwrap_or(Value::Null),
                            _ => Value::Null,
                        }
                    }
                    "keySet" => match &cur {
                        Value::Object(o) => json!(o.keys().collect::<Vec<_>>()),
                        _ => Value::Null,
                    },
                    "isEmpty" => json!(match &cur {
                        Value::Object(o) => o.is_empty(),
                        Value::Array(a) => a.is_empty(),
                        Value::String(s) => s.is_empty(),
                        _ => true,
                    }),
                    "size" | "length" => match &cur {
                        Value::Object(o) => json!(o.len()),
                        Value::Array(a) => json!(a.len()),
                        Value::String(s) => json!(s.chars().count()),
                        _ => Value::Null,
                    },
                    _ => Value::Null,
                },
            };
        }
        cur
    }

    fn input_call(&self, name: &str, args: Option<&[Expr]>) -> Value {
        let arg = args.and_then(|a| a.first()).map(|a| to_text(&self.eval(a)));
        let body = || serde_json::from_str::<Value>(&self.input.body).unwrap_or(Value::Null);
        let pairs = |p: &[(String, String)]| -> Value {
            Value::Object(
                p.iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect::<Map<_, _>>(),
            )
        };
        match (name, arg) {
            ("body", _) => json!(self.input.body),
            ("json", Some(path)) => json!(json_path(&body(), &path).to_string()),
            ("path", Some(path)) => json_path(&body(), &path),
            ("params", None) => json!({
                "path": pairs(&self.input.path_params),
                "querystring": pairs(&self.input.query),
                "header": pairs(&self.input.headers),
            }),
            ("params", Some(n)) => {
                let find = |p: &[(String, String)], ci: bool| {
                    p.iter()
                        .find(|(k, _)| {
                            if ci {
                                k.eq_ignore_ascii_case(&n)
                            } else {
                                *k == n
                            }
                        })
                        .map(|(_, v)| json!(v))
                };
                find(&self.input.path_params, false)
                    .or_else(|| find(&self.input.query, false))
                    .or_else(|| find(&self.input.headers, true))
                    .unwrap_or(json!(""))
            }
            _ => Value::Null,
        }
    }
}

fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.parse::<f64>().ok() == n.as_f64()
        }
        _ => a == b,
    }
}

fn util_call(name: &str, arg: &Value) -> Value {
    let s = to_text(arg);
    match name {
        "escapeJavaScript" => json!(escape_javascript(&s)),
        "urlEncode" => json!(
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                        (b as char).to_string()
                    }
                    b' ' => "+".to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        ),
        "urlDecode" => json!(url_decode(&s)),
        "base64Encode" => json!(base64::engine::general_purpose::STANDARD.encode(s.as_bytes())),
        "base64Decode" => base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map(|b| json!(String::from_utf8_lossy(&b)))
            .unwrap_or(Value::Null),
        "parseJson" => serde_json::from_str(&s).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Apache Commons' `escapeJavaScript`, which API Gateway uses (it escapes `'` and `/` too).
fn escape_javascript(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `$`, `$.a.b`, `$['a']`, `$.a[0]`; `Null` for anything missing or unparsable.
fn json_path(root: &Value, path: &str) -> Value {
    let Some(mut rest) = path.trim().strip_prefix('$') else {
        return Value::Null;
    };
    let mut cur = root;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let Some(next) = cur.get(&r[..end]) else {
                return Value::Null;
            };
            cur = next;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Value::Null;
            };
            let key = r[..end].trim();
            let next = if let Some(q) = key
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
                .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
            {
                cur.get(q)
            } else {
                key.parse::<usize>().ok().and_then(|i| cur.get(i))
            };
            let Some(next) = next else {
                return Value::Null;
            };
            cur = next;
            rest = &r[end + 1..];
        } else {
            return Value::Null;
        }
    }
    cur.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        Input {
            body: r#"{"name":"O'Brien","items":[{"id":1},{"id":2}],"n":5}"#.into(),
            path_params: vec![("id".into(), "42".into())],
            query: vec![("q".into(), "hello world".into())],
            headers: vec![("X-Trace".into(), "t-1".into())],
            context: json!({"requestId": "r-1", "identity": {"sourceIp": "127.0.0.1"}, "stage": "dev"}),
            stage_variables: json!({"color": "red"}),
        }
    }

    #[test]
    fn cases() {
        let cases: &[(&str, &str)] = &[
            (r#"{"statusCode": 200}"#, r#"{"statusCode": 200}"#),
            (
                "$input.json('$')",
                r#"{"name":"O'Brien","items":[{"id":1},{"id":2}],"n":5}"#,
            ),
            ("$input.json('$.items[1]')", r#"{"id":2}"#),
            ("$input.path('$.name')", "O'Brien"),
            ("$input.path('$.n')", "5"),
            ("$input.json('$.missing')", "null"),
            (
                "$input.params('id')/$input.params('q')/$input.params('x-trace')",
                "42/hello world/t-1",
            ),
            ("[$input.params('nope')]", "[]"),
            ("$input.params().path.id", "42"),
            (
                "${context.requestId} $context.identity.sourceIp",
                "r-1 127.0.0.1",
            ),
            ("$stageVariables.color", "red"),
            ("$util.escapeJavaScript($input.path('$.name'))", "O\\'Brien"),
            ("$util.escapeJavaScript('a\"b/c')", "a\\\"b\\/c"),
            (
                "$util.base64Encode('hi')|$util.base64Decode('aGk=')",
                "aGk=|hi",
            ),
            ("$util.urlEncode('a b&c')", "a+b%26c"),
            ("$util.parseJson('{\"a\":[1]}').a", "[1]"),
            ("$nothing|$!nothing|$!{context.nope}|", "$nothing|||"),
            ("cost: $5", "cost: $5"),
            (
                "#set($x = $input.path('$.n'))#if($x == 5)five#else other#end",
                "five",
            ),
            (
                "#if($context.stage != 'dev')prod#elseif($input.params('id') == '42')dev42#end",
                "dev42",
            ),
            (
                "#if(!$nothing && ($context.stage == 'dev' || false))yes#end",
                "yes",
            ),
            ("#if($nothing)a#{else}b#{end}", "b"),
            ("## a comment\nline", "\nline"),
            (
                "$input.path('$.items').size()|$input.path('$.items').get(0).id",
                "2|1",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(render(t, &input()).as_deref(), Ok(*want), "template {t}");
        }
    }

    #[test]
    fn unsupported_and_broken() {
        assert!(render("#macro(m)#end", &input()).is_err());
        assert!(render("#foreach($x in $y)never closed", &input()).is_err());
        assert!(render("#if(true)never closed", &input()).is_err());
        assert!(render("${context.requestId", &input()).is_err());
        assert!(render("$input.json('$", &input()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_template_renders_or_errs(t in "[$#!{}()'.a-z=&| \\[\\]0-9]{0,40}") {
            let _ = render(&t, &input());
        }
    }
}
