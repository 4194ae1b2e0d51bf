//! The `States.*` intrinsic functions of JSONPath states, parsed from their string form
//! (`States.Format('{} and {}', $.a, 3)`) and evaluated against the state's data and context.
//! Failures are `States.IntrinsicFailure` with AWS's wording where known.

use base64::Engine;
use serde_json::{Map, Value};

use super::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Lit(Value),
    Path(Path),
    Call(Call),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub args: Vec<Arg>,
}

pub const FUNCTIONS: &[&str] = &[
    "States.Format",
    "States.StringToJson",
    "States.JsonToString",
    "States.Array",
    "States.ArrayPartition",
    "States.ArrayContains",
    "States.ArrayRange",
    "States.ArrayGetItem",
    "States.ArrayLength",
    "States.ArrayUnique",
    "States.Base64Encode",
    "States.Base64Decode",
    "States.Hash",
    "States.JsonMerge",
    "States.MathRandom",
    "States.MathAdd",
    "States.StringSplit",
    "States.UUID",
];

pub fn parse(text: &str) -> Result<Call, String> {
    let mut p = P {
        s: text.as_bytes(),
        i: 0,
        text,
    };
    let call = p.call()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err());
    }
    Ok(call)
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
    text: &'a str,
}

impl P<'_> {
    fn err(&self) -> String {
        format!(
            "The value '{}' is not a valid intrinsic function",
            self.text
        )
    }
    fn ws(&mut self) {
        while self.s.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
    }
    fn call(&mut self) -> Result<Call, String> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
        {
            self.i += 1;
        }
        let name = std::str::from_utf8(&self.s[start..self.i])
            .map_err(|_| self.err())?
            .to_string();
        if !FUNCTIONS.contains(&name.as_str()) {
            return Err(format!("The intrinsic function '{name}' is not supported"));
        }
        if self.s.get(self.i) != Some(&b'(') {
            return Err(self.err());
        }
        self.i += 1;
        let mut args = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b')') {
            self.i += 1;
            return Ok(Call { name, args });
        }
        loop {
            self.ws();
            args.push(self.arg()?);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b')') => {
                    self.i += 1;
                    return Ok(Call { name, args });
                }
                _ => return Err(self.err()),
            }
        }
    }
    fn arg(&mut self) -> Result<Arg, String> {
        match self.s.get(self.i) {
            Some(b'\'') => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    match self.s.get(self.i) {
                        None => return Err(self.err()),
                        Some(b'\'') => {
                            self.i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let next = *self.s.get(self.i + 1).ok_or_else(|| self.err())?;
                            // `\{` and `\}` stay escaped for States.Format to see.
                            if next == b'{' || next == b'}' {
                                out.push(b'\\');
                            }
                            out.push(next);
                            self.i += 2;
                        }
                        Some(c) => {
                            out.push(*c);
                            self.i += 1;
                        }
                    }
                }
                Ok(Arg::Lit(Value::String(
                    String::from_utf8(out).map_err(|_| self.err())?,
                )))
            }
            Some(b'$') => {
                let start = self.i;
                let mut depth = 0i32;
                let mut quote: Option<u8> = None;
                while let Some(&c) = self.s.get(self.i) {
                    if let Some(q) = quote {
                        if c == q {
                            quote = None;
                        }
                    } else if c == b'\'' || c == b'"' {
                        quote = Some(c);
                    } else if c == b'[' || c == b'(' {
                        depth += 1;
                    } else if c == b']' || (c == b')' && depth > 0) {
                        depth -= 1;
                    } else if depth == 0 && (c == b',' || c == b')' || c == b' ') {
                        break;
                    }
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err())?;
                Ok(Arg::Path(Path::parse(t)?))
            }
            Some(b'S') => Ok(Arg::Call(self.call()?)),
            _ => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| !matches!(c, b',' | b')' | b' '))
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err())?;
                serde_json::from_str::<Value>(t)
                    .ok()
                    .filter(|v| v.is_number() || v.is_boolean() || v.is_null())
                    .map(Arg::Lit)
                    .ok_or_else(|| self.err())
            }
        }
    }
}

/// Evaluates `call`; `data` is the state's input, `context` the `$$` object, `rng` the
/// execution's deterministic generator.
pub fn eval(call: &Call, data: &Value, context: &Value, rng: &mut u64) -> Result<Value, String> {
    let mut args = Vec::with_capacity(call.args.len());
    for a in &call.args {
        args.push(match a {
            Arg::Lit(v) => v.clone(),
            Arg::Path(p) => {
                let root = if p.context { context } else { data };
                p.eval(root).ok_or_else(|| {
                    format!(
                        "The JsonPath argument for the field '{}' could not be found in the input",
                        p.text
                    )
                })?
            }
            Arg::Call(c) => eval(c, data, context, rng)?,
        });
    }
    let name = call.name.as_str();
    let count = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "Invalid arguments in {name}: expected {n} argument(s), got {}",
                args.len()
            ))
        }
    };
    let string = |v: &Value| -> Result<String, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("Invalid arguments in {name}: expected a string"))
    };
    let int = |v: &Value| -> Result<i64, String> {
        v.as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| format!("Invalid arguments in {name}: expected an integer"))
    };
    let array = |v: &Value| -> Result<Vec<Value>, String> {
        v.as_array()
            .cloned()
            .ok_or_else(|| format!("Invalid arguments in {name}: expected an array"))
    };
    match name {
        "States.Format" => {
            if args.is_empty() {
                return Err(format!("Invalid arguments in {name}"));
            }
            let template = string(&args[0])?;
            let mut out = String::new();
            let mut next = 1;
            let mut chars = template.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            out.push(n);
                        }
                    }
                    '{' if chars.peek() == Some(&'}') => {
                        chars.next();
                        let v = args.get(next).ok_or_else(|| {
                            format!("Invalid arguments in {name}: the number of arguments does not match the number of placeholders")
                        })?;
                        next += 1;
                        match v {
                            Value::String(s) => out.push_str(s),
                            Value::Object(_) | Value::Array(_) => {
                                return Err(format!(
                                    "Invalid arguments in {name}: placeholders take only strings, numbers, booleans and null"
                                ));
                            }
                            other => out.push_str(&other.to_string()),
                        }
                    }
                    c => out.push(c),
                }
            }
            if next != args.len() {
                return Err(format!(
                    "Invalid arguments in {name}: the number of arguments does not match the number of placeholders"
                ));
            }
            Ok(Value::String(out))
        }
        "States.StringToJson" => {
            count(1)?;
            serde_json::from_str(&string(&args[0])?)
                .map_err(|_| format!("Invalid arguments in {name}: not a JSON string"))
        }
        "States.JsonToString" => {
            count(1)?;
            Ok(Value::String(args[0].to_string()))
        }
        "States.Array" => Ok(Value::Array(args)),
        "States.ArrayPartition" => {
            count(2)?;
            let items = array(&args[0])?;
            let size = int(&args[1])?;
            if size <= 0 {
                return Err(format!(
                    "Invalid arguments in {name}: chunk size must be positive"
                ));
            }
            Ok(Value::Array(
                items
                    .chunks(size as usize)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        "States.ArrayContains" => {
            count(2)?;
            Ok(Value::Bool(array(&args[0])?.contains(&args[1])))
        }
        "States.ArrayRange" => {
            count(3)?;
            let (start, end, step) = (int(&args[0])?, int(&args[1])?, int(&args[2])?);
            if step == 0 {
                return Err(format!("Invalid arguments in {name}: step must not be 0"));
            }
            let mut out = Vec::new();
            let mut i = start;
            while (step > 0 && i <= end) || (step < 0 && i >= end) {
                out.push(Value::from(i));
                if out.len() > 1000 {
                    return Err(format!(
                        "Invalid arguments in {name}: the array cannot hold more than 1000 items"
                    ));
                }
                i += step;
            }
            Ok(Value::Array(out))
        }
        "States.ArrayGetItem" => {
            count(2)?;
            let items = array(&args[0])?;
            let i = int(&args[1])?;
            items
                .get(usize::try_from(i).map_err(|_| format!("Invalid arguments in {name}"))?)
                .cloned()
                .ok_or_else(|| format!("Invalid arguments in {name}: index out of bounds"))
        }
        "States.ArrayLength" => {
            count(1)?;
            Ok(Value::from(array(&args[0])?.len()))
        }
        "States.ArrayUnique" => {
            count(1)?;
            let mut out: Vec<Value> = Vec::new();
            for v in array(&args[0])? {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Ok(Value::Array(out))
        }
        "States.Base64Encode" => {
            count(1)?;
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(string(&args[0])?),
            ))
        }
        "States.Base64Decode" => {
            count(1)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(string(&args[0])?)
                .map_err(|_| format!("Invalid arguments in {name}: not base64"))?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| format!("Invalid arguments in {name}: not UTF-8"))
        }
        "States.Hash" => {
            count(2)?;
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let algo = string(&args[1])?;
            Ok(Value::String(hash(&algo, data.as_bytes()).ok_or_else(|| {
                format!("Invalid arguments in {name}: unsupported algorithm {algo} (MD5, SHA-1, SHA-256, SHA-384, SHA-512)")
            })?))
        }
        "States.JsonMerge" => {
            count(3)?;
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                return Err(format!("Invalid arguments in {name}: expected two objects"));
            };
            if args[2] != Value::Bool(false) {
                return Err(format!(
                    "Invalid arguments in {name}: only shallow merges (false) are supported"
                ));
            }
            let mut out: Map<String, Value> = a.clone();
            for (k, v) in b {
                out.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(out))
        }
        "States.MathRandom" => {
            if args.len() != 2 && args.len() != 3 {
                return Err(format!("Invalid arguments in {name}"));
            }
            let (lo, hi) = (int(&args[0])?, int(&args[1])?);
            if hi <= lo {
                return Err(format!(
                    "Invalid arguments in {name}: end must exceed start"
                ));
            }
            let span = (hi - lo) as u64;
            Ok(Value::from(lo + (next_random(rng) % span) as i64))
        }
        "States.MathAdd" => {
            count(2)?;
            Ok(Value::from(int(&args[0])? + int(&args[1])?))
        }
        "States.StringSplit" => {
            count(2)?;
            let s = string(&args[0])?;
            let d = string(&args[1])?;
            let parts: Vec<Value> = if d.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(|c| d.contains(c))
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect()
            };
            Ok(Value::Array(parts))
        }
        "States.UUID" => {
            count(0)?;
            Ok(Value::String(uuid(rng)))
        }
        _ => Err(format!("The intrinsic function '{name}' is not supported")),
    }
}

/// A version 4 UUID drawn from `rng`.
pub(crate) fn uuid(rng: &mut u64) -> String {
    let a = next_random(rng);
    let b = next_random(rng);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// splitmix64: deterministic, so a replayed step draws the same numbers.
pub fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn hash(algo: &str, data: &[u8]) -> Option<String> {
    use md5::Digest as _;
    Some(match algo {
        "MD5" => hex(&md5::Md5::digest(data)),
        "SHA-1" => hex(&sha1(data)),
        "SHA-256" => hex(&sha2::Sha256::digest(data)),
        "SHA-384" => hex(&sha2::Sha384::digest(data)),
        "SHA-512" => hex(&sha2::Sha512::digest(data)),
        _ => return None,
    })
}

/// SHA-1 (FIPS 180-4), only for `States.Hash`; no crate for it is in the build.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(expr: &str, data: Value) -> Result<Value, String> {
        let mut rng = 7;
        eval(&parse(expr)?, &data, &json!({}), &mut rng)
    }

    #[test]
    fn sha1_matches_the_standard_vector() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn nested_calls_and_escapes() {
        assert_eq!(
            run(
                "States.Format('{} has \\{x\\} {}', $.a, States.MathAdd(1, 2))",
                json!({"a": "A"})
            ),
            Ok(json!("A has {x} 3"))
        );
        assert!(run("States.Nope()", json!({})).is_err());
    }
}
