//! JSONPath as Step Functions reads it (Jayway-style): reference paths (`$.a.b[0]`,
//! `$['a b']`) for `ResultPath`, and the general form (`[*]`, slices, `..`, filters) for
//! `InputPath`, `OutputPath`, `ItemsPath` and `.$` fields. A definite path yields one value; an
//! indefinite one (wildcard, slice, descent, filter) yields the array of its matches.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Index(i64),
    Wildcard,
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Union(Vec<Seg>),
    /// `..name`, `..[0]` or `..*`: the inner segment applied at every depth.
    Descent(Box<Seg>),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Exists(Vec<Seg>),
    Compare(Vec<Seg>, CmpOp, Value),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The key under which the context object given to paths carries the workflow variables
/// in scope: `$name.a` is read as `$$[VARS]['name'].a`, so every place that picks a path's
/// root (data or context) reads variables too. No JSON key can start with NUL.
pub const VARS_KEY: &str = "\u{0}vars";

/// A parsed path: `$...` over the data, `$$...` over the context object, or `$name...` over
/// a workflow variable (held as a context path under [`VARS_KEY`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub context: bool,
    pub segs: Vec<Seg>,
    pub text: String,
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, String> {
        let mut var = None;
        let (context, rest) = if let Some(r) = text.strip_prefix("$$") {
            (true, r)
        } else if let Some(r) = text.strip_prefix('$') {
            let n: usize = r
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .map(char::len_utf8)
                .sum();
            if n > 0 && !r.starts_with(|c: char| c.is_ascii_digit()) {
                var = Some(r[..n].to_string());
                (true, &r[n..])
            } else {
                (false, r)
            }
        } else {
            return Err(format!("The value '{text}' is not a valid JSONPath"));
        };
        let mut p = Parser {
            s: rest.as_bytes(),
            i: 0,
        };
        let mut segs = p
            .segments()
            .map_err(|_| format!("The value '{text}' is not a valid JSONPath"))?;
        if let Some(name) = var {
            segs.splice(0..0, [Seg::Key(VARS_KEY.into()), Seg::Key(name)]);
        }
        if p.i != p.s.len() {
            return Err(format!("The value '{text}' is not a valid JSONPath"));
        }
        Ok(Path {
            context,
            segs,
            text: text.to_string(),
        })
    }

    /// A reference path names one node: only keys and indexes.
    pub fn is_reference(&self) -> bool {
        self.segs
            .iter()
            .all(|s| matches!(s, Seg::Key(_) | Seg::Index(_)))
    }

    pub fn is_definite(&self) -> bool {
        self.is_reference()
    }

    /// The value(s) at this path; `None` when a definite path finds nothing.
    pub fn eval(&self, root: &Value) -> Option<Value> {
        if self.context && self.segs.is_empty() {
            let mut whole = root.clone();
            if let Value::Object(m) = &mut whole {
                m.remove(VARS_KEY);
            }
            return Some(whole);
        }
        let found = select(&self.segs, root);
        if self.is_definite() {
            found.into_iter().next().cloned()
        } else {
            Some(Value::Array(found.into_iter().cloned().collect()))
        }
    }

    /// Writes `value` at this reference path inside `root` (ResultPath), creating missing
    /// objects on the way.
    pub fn set(&self, root: Value, value: Value) -> Result<Value, String> {
        if self.segs.is_empty() {
            return Ok(value);
        }
        let mut root = root;
        {
            let mut cur = &mut root;
            let n = self.segs.len();
            for (k, seg) in self.segs.iter().enumerate() {
                let last = k + 1 == n;
                match seg {
                    Seg::Key(name) => {
                        let Value::Object(map) = cur else {
                            return Err(format!(
                                "Unable to apply ResultPath \"{}\" to input",
                                self.text
                            ));
                        };
                        if last {
                            map.insert(name.clone(), value);
                            break;
                        }
                        cur = map
                            .entry(name.clone())
                            .or_insert_with(|| Value::Object(Map::new()));
                    }
                    Seg::Index(i) => {
                        let Value::Array(items) = cur else {
                            return Err(format!(
                                "Unable to apply ResultPath \"{}\" to input",
                                self.text
                            ));
                        };
                        let len = items.len() as i64;
                        let idx = if *i < 0 { len + i } else { *i };
                        if idx < 0 || idx >= len {
                            return Err(format!(
                                "Unable to apply ResultPath \"{}\" to input",
                                self.text
                            ));
                        }
                        if last {
                            items[idx as usize] = value;
                            break;
                        }
                        cur = &mut items[idx as usize];
                    }
                    _ => {
                        return Err(format!(
                            "The ResultPath \"{}\" is not a reference path",
                            self.text
                        ));
                    }
                }
            }
        }
        Ok(root)
    }
}

fn select<'a>(segs: &[Seg], root: &'a Value) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for seg in segs {
        let mut next = Vec::new();
        for v in cur {
            apply(seg, v, &mut next);
        }
        cur = next;
    }
    cur
}

fn apply<'a>(seg: &Seg, v: &'a Value, out: &mut Vec<&'a Value>) {
    match seg {
        Seg::Key(k) => {
            if let Some(x) = v.as_object().and_then(|m| m.get(k)) {
                out.push(x);
            }
        }
        Seg::Index(i) => {
            if let Value::Array(a) = v {
                let len = a.len() as i64;
                let idx = if *i < 0 { len + i } else { *i };
                if idx >= 0 && idx < len {
                    out.push(&a[idx as usize]);
                }
            }
        }
        Seg::Wildcard => match v {
            Value::Array(a) => out.extend(a.iter()),
            Value::Object(m) => out.extend(m.values()),
            _ => {}
        },
        Seg::Slice(start, end, step) => {
            if let Value::Array(a) = v {
                let len = a.len() as i64;
                let step = step.unwrap_or(1).max(1);
                let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                let s = start.map(norm).unwrap_or(0);
                let e = end.map(norm).unwrap_or(len);
                let mut i = s;
                while i < e {
                    out.push(&a[i as usize]);
                    i += step;
                }
            }
        }
        Seg::Union(parts) => {
            for p in parts {
                apply(p, v, out);
            }
        }
        Seg::Descent(inner) => descend(inner, v, out),
        Seg::Filter(f) => {
            let items: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                Value::Object(m) => m.values().collect(),
                _ => Vec::new(),
            };
            for item in items {
                if filter_holds(f, item) {
                    out.push(item);
                }
            }
        }
    }
}

fn descend<'a>(inner: &Seg, v: &'a Value, out: &mut Vec<&'a Value>) {
    apply(inner, v, out);
    match v {
        Value::Array(a) => a.iter().for_each(|x| descend(inner, x, out)),
        Value::Object(m) => m.values().for_each(|x| descend(inner, x, out)),
        _ => {}
    }
}

fn filter_holds(f: &Filter, item: &Value) -> bool {
    match f {
        Filter::Exists(segs) => !select(segs, item).is_empty(),
        Filter::And(a, b) => filter_holds(a, item) && filter_holds(b, item),
        Filter::Or(a, b) => filter_holds(a, item) || filter_holds(b, item),
        Filter::Compare(segs, op, lit) => {
            let Some(x) = select(segs, item).into_iter().next() else {
                return false;
            };
            let ord = match (x, lit) {
                (Value::Number(a), Value::Number(b)) => a
                    .as_f64()
                    .zip(b.as_f64())
                    .and_then(|(a, b)| a.partial_cmp(&b)),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                (a, b) => {
                    if a == b {
                        Some(std::cmp::Ordering::Equal)
                    } else {
                        return *op == CmpOp::Ne;
                    }
                }
            };
            let Some(ord) = ord else { return false };
            use std::cmp::Ordering::*;
            match op {
                CmpOp::Eq => ord == Equal,
                CmpOp::Ne => ord != Equal,
                CmpOp::Lt => ord == Less,
                CmpOp::Le => ord != Greater,
                CmpOp::Gt => ord == Greater,
                CmpOp::Ge => ord != Less,
            }
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn segments(&mut self) -> Result<Vec<Seg>, ()> {
        let mut segs = Vec::new();
        loop {
            match self.peek() {
                Some(b'.') => {
                    self.i += 1;
                    if self.peek() == Some(b'.') {
                        self.i += 1;
                        let inner = if self.peek() == Some(b'[') {
                            self.bracket()?
                        } else {
                            self.dot_member()?
                        };
                        segs.push(Seg::Descent(Box::new(inner)));
                    } else {
                        segs.push(self.dot_member()?);
                    }
                }
                Some(b'[') => segs.push(self.bracket()?),
                _ => return Ok(segs),
            }
        }
    }

    fn dot_member(&mut self) -> Result<Seg, ()> {
        if self.peek() == Some(b'*') {
            self.i += 1;
            return Ok(Seg::Wildcard);
        }
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == b'.'
                || c == b'['
                || c == b' '
                || c == b')'
                || c == b'='
                || c == b'<'
                || c == b'>'
                || c == b'!'
                || c == b'&'
                || c == b'|'
            {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return Err(());
        }
        let name = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| ())?;
        Ok(Seg::Key(name.to_string()))
    }

    fn bracket(&mut self) -> Result<Seg, ()> {
        self.i += 1; // [
        self.ws();
        let seg = match self.peek() {
            Some(b'*') => {
                self.i += 1;
                Seg::Wildcard
            }
            Some(b'?') => {
                self.i += 1;
                self.ws();
                if self.peek() != Some(b'(') {
                    return Err(());
                }
                self.i += 1;
                let f = self.filter_or()?;
                self.ws();
                if self.peek() != Some(b')') {
                    return Err(());
                }
                self.i += 1;
                Seg::Filter(f)
            }
            Some(b'\'') | Some(b'"') => {
                let mut parts = vec![Seg::Key(self.quoted()?)];
                self.ws();
                while self.peek() == Some(b',') {
                    self.i += 1;
                    self.ws();
                    parts.push(Seg::Key(self.quoted()?));
                    self.ws();
                }
                if parts.len() == 1 {
                    parts.pop().ok_or(())?
                } else {
                    Seg::Union(parts)
                }
            }
            _ => {
                let a = self.int_opt();
                self.ws();
                if self.peek() == Some(b':') {
                    self.i += 1;
                    let b = self.int_opt();
                    let c = if self.peek() == Some(b':') {
                        self.i += 1;
                        self.int_opt()
                    } else {
                        None
                    };
                    Seg::Slice(a, b, c)
                } else {
                    let a = a.ok_or(())?;
                    let mut parts = vec![Seg::Index(a)];
                    while self.peek() == Some(b',') {
                        self.i += 1;
                        self.ws();
                        parts.push(Seg::Index(self.int_opt().ok_or(())?));
                        self.ws();
                    }
                    if parts.len() == 1 {
                        parts.pop().ok_or(())?
                    } else {
                        Seg::Union(parts)
                    }
                }
            }
        };
        self.ws();
        if self.peek() != Some(b']') {
            return Err(());
        }
        self.i += 1;
        Ok(seg)
    }

    fn int_opt(&mut self) -> Option<i64> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        match t.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.i = start;
                None
            }
        }
    }

    fn quoted(&mut self) -> Result<String, ()> {
        let q = self.peek().ok_or(())?;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(()),
                Some(c) if c == q => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    out.push(self.peek().ok_or(())?);
                    self.i += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| ())
    }

    fn filter_or(&mut self) -> Result<Filter, ()> {
        let mut left = self.filter_and()?;
        loop {
            self.ws();
            if self.s[self.i..].starts_with(b"||") {
                self.i += 2;
                let right = self.filter_and()?;
                left = Filter::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn filter_and(&mut self) -> Result<Filter, ()> {
        let mut left = self.filter_atom()?;
        loop {
            self.ws();
            if self.s[self.i..].starts_with(b"&&") {
                self.i += 2;
                let right = self.filter_atom()?;
                left = Filter::And(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn filter_atom(&mut self) -> Result<Filter, ()> {
        self.ws();
        if self.peek() == Some(b'(') {
            self.i += 1;
            let f = self.filter_or()?;
            self.ws();
            if self.peek() != Some(b')') {
                return Err(());
            }
            self.i += 1;
            return Ok(f);
        }
        if self.peek() != Some(b'@') {
            return Err(());
        }
        self.i += 1;
        let segs = self.segments()?;
        self.ws();
        let rest = &self.s[self.i..];
        let op = if rest.starts_with(b"==") {
            CmpOp::Eq
        } else if rest.starts_with(b"!=") {
            CmpOp::Ne
        } else if rest.starts_with(b"<=") {
            CmpOp::Le
        } else if rest.starts_with(b">=") {
            CmpOp::Ge
        } else if rest.starts_with(b"<") {
            CmpOp::Lt
        } else if rest.starts_with(b">") {
            CmpOp::Gt
        } else {
            return Ok(Filter::Exists(segs));
        };
        self.i += if matches!(op, CmpOp::Lt | CmpOp::Gt) {
            1
        } else {
            2
        };
        self.ws();
        let lit = match self.peek() {
            Some(b'\'') | Some(b'"') => Value::String(self.quoted()?),
            _ => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| !matches!(c, b' ' | b')' | b'&' | b'|'))
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| ())?;
                serde_json::from_str(t).map_err(|_| ())?
            }
        };
        Ok(Filter::Compare(segs, op, lit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(p: &str, v: Value) -> Option<Value> {
        Path::parse(p).expect("valid").eval(&v)
    }

    #[test]
    fn reference_and_general_paths() {
        let doc = json!({"a": {"b": [1, 2, 3]}, "c d": 4, "items": [{"p": 5, "n": "x"}, {"p": 15, "n": "y"}]});
        assert_eq!(eval("$", doc.clone()), Some(doc.clone()));
        assert_eq!(eval("$.a.b[1]", doc.clone()), Some(json!(2)));
        assert_eq!(eval("$.a.b[-1]", doc.clone()), Some(json!(3)));
        assert_eq!(eval("$['c d']", doc.clone()), Some(json!(4)));
        assert_eq!(eval("$.missing", doc.clone()), None);
        assert_eq!(eval("$.a.b[*]", doc.clone()), Some(json!([1, 2, 3])));
        assert_eq!(eval("$.a.b[0:2]", doc.clone()), Some(json!([1, 2])));
        assert_eq!(eval("$..p", doc.clone()), Some(json!([5, 15])));
        assert_eq!(
            eval("$.items[?(@.p > 10)].n", doc.clone()),
            Some(json!(["y"]))
        );
        assert_eq!(
            eval("$.items[?(@.n == 'x')].p", doc.clone()),
            Some(json!([5]))
        );
        assert!(Path::parse("a.b").is_err());
        assert!(Path::parse("$.a[").is_err());
    }

    #[test]
    fn set_creates_objects_and_rejects_non_objects() {
        let p = Path::parse("$.x.y").expect("valid");
        assert_eq!(
            p.set(json!({"a": 1}), json!(2)).expect("set"),
            json!({"a": 1, "x": {"y": 2}})
        );
        assert!(p.set(json!({"x": 3}), json!(2)).is_err());
        assert_eq!(
            Path::parse("$")
                .expect("valid")
                .set(json!(1), json!(2))
                .expect("set"),
            json!(2)
        );
    }
}
