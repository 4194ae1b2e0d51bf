//! A pull tokenizer for pattern text.
//!
//! Pattern validation reproduces event-ruler's reasons, and event-ruler reports the first
//! problem met while streaming tokens (Jackson's `nextToken`), so a tree parser would report
//! some errors in a different order. This tokenizer yields the same token sequence Jackson
//! does, keeps number lexemes as written, and reports JSON syntax errors where it meets them.

use std::borrow::Cow;

use super::number::is_json_number;

/// Deepest nesting accepted in patterns and events (Jackson's default limit).
pub(crate) const MAX_DEPTH: usize = 1000;

#[derive(Debug, PartialEq)]
pub(crate) enum Token<'a> {
    StartObject,
    EndObject,
    StartArray,
    EndArray,
    /// An object member name (the colon after it is consumed).
    Name(Cow<'a, str>),
    Str(Cow<'a, str>),
    /// A number lexeme, as written.
    Num(&'a str),
    True,
    False,
    Null,
}

#[derive(Clone, Copy, PartialEq)]
enum Frame {
    /// In an object; `true` once a member was read (a comma must come next).
    Object(bool),
    Array(bool),
}

pub(crate) struct Tokenizer<'a> {
    text: &'a str,
    pos: usize,
    stack: Vec<Frame>,
    /// An object member name was just read: its value comes next.
    after_name: bool,
    root_done: bool,
}

impl<'a> Tokenizer<'a> {
    pub(crate) fn new(text: &'a str) -> Tokenizer<'a> {
        Tokenizer {
            text,
            pos: 0,
            stack: Vec::new(),
            after_name: false,
            root_done: false,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn error(&self, what: &str) -> String {
        let (line, column) = line_and_column(self.text, self.pos);
        format!("Malformed JSON: {what} at line {line}, column {column}")
    }

    fn skip_ws(&mut self) {
        let b = self.bytes();
        while matches!(b.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// The next token; an error once the root value is complete.
    pub(crate) fn next(&mut self) -> Result<Token<'a>, String> {
        self.skip_ws();
        if self.after_name {
            self.after_name = false;
            return self.value();
        }
        match self.stack.last().copied() {
            None if self.root_done => Err(self.error("unexpected token after the end")),
            None => self.value(),
            Some(Frame::Object(has_member)) => {
                match self.bytes().get(self.pos) {
                    Some(b'}') => {
                        self.pos += 1;
                        self.close();
                        return Ok(Token::EndObject);
                    }
                    Some(b',') if has_member => {
                        self.pos += 1;
                        self.skip_ws();
                    }
                    _ if has_member => return Err(self.error("expected ',' or '}'")),
                    _ => {}
                }
                if self.bytes().get(self.pos) != Some(&b'"') {
                    return Err(self.error("expected a double-quoted member name"));
                }
                let name = self.string()?;
                self.skip_ws();
                if self.bytes().get(self.pos) != Some(&b':') {
                    return Err(self.error("expected ':' after a member name"));
                }
                self.pos += 1;
                if let Some(Frame::Object(seen)) = self.stack.last_mut() {
                    *seen = true;
                }
                self.after_name = true;
                Ok(Token::Name(name))
            }
            Some(Frame::Array(has_element)) => {
                match self.bytes().get(self.pos) {
                    Some(b']') => {
                        self.pos += 1;
                        self.close();
                        return Ok(Token::EndArray);
                    }
                    Some(b',') if has_element => {
                        self.pos += 1;
                        self.skip_ws();
                    }
                    _ if has_element => return Err(self.error("expected ',' or ']'")),
                    _ => {}
                }
                if let Some(Frame::Array(seen)) = self.stack.last_mut() {
                    *seen = true;
                }
                self.value()
            }
        }
    }

    /// Checks that nothing but white space follows the root value.
    pub(crate) fn finish(&mut self) -> Result<(), String> {
        self.skip_ws();
        if self.pos == self.text.len() && self.stack.is_empty() && self.root_done {
            Ok(())
        } else {
            Err(self.error("unexpected content after the end"))
        }
    }

    fn close(&mut self) {
        self.stack.pop();
        if self.stack.is_empty() {
            self.root_done = true;
        }
    }

    fn scalar_done(&mut self) {
        if self.stack.is_empty() {
            self.root_done = true;
        }
    }

    fn open(&mut self, frame: Frame) -> Result<(), String> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.stack.push(frame);
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self) -> Result<Token<'a>, String> {
        self.skip_ws();
        let token = match self.bytes().get(self.pos) {
            Some(b'{') => {
                self.open(Frame::Object(false))?;
                return Ok(Token::StartObject);
            }
            Some(b'[') => {
                self.open(Frame::Array(false))?;
                return Ok(Token::StartArray);
            }
            Some(b'"') => Token::Str(self.string()?),
            Some(b'-' | b'0'..=b'9') => Token::Num(self.number()?),
            Some(b't') => self.literal("true", Token::True)?,
            Some(b'f') => self.literal("false", Token::False)?,
            Some(b'n') => self.literal("null", Token::Null)?,
            Some(_) => return Err(self.error("unexpected character")),
            None => return Err(self.error("unexpected end of input")),
        };
        self.scalar_done();
        Ok(token)
    }

    fn literal(&mut self, word: &str, token: Token<'a>) -> Result<Token<'a>, String> {
        if self.text[self.pos..].starts_with(word) && !self.ident_follows(self.pos + word.len()) {
            self.pos += word.len();
            Ok(token)
        } else {
            Err(self.error("unrecognized token"))
        }
    }

    fn ident_follows(&self, at: usize) -> bool {
        self.bytes()
            .get(at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
    }

    fn number(&mut self) -> Result<&'a str, String> {
        let b = self.bytes();
        let start = self.pos;
        let mut end = start;
        while end < b.len() && matches!(b[end], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
            end += 1;
        }
        let lexeme = &self.text[start..end];
        if !is_json_number(lexeme) || self.ident_follows(end) {
            return Err(self.error("invalid number"));
        }
        self.pos = end;
        Ok(lexeme)
    }

    /// Reads a string starting at the opening quote.
    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        let (value, end) = read_string(self.text, self.pos + 1).map_err(|at| {
            self.pos = at;
            self.error("invalid string")
        })?;
        self.pos = end;
        Ok(value)
    }
}

/// Reads a JSON string whose content starts at `start` (after the opening quote). Returns the
/// value and the position after the closing quote, or the position of the error.
pub(crate) fn read_string(text: &str, start: usize) -> Result<(Cow<'_, str>, usize), usize> {
    let b = text.as_bytes();
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' => return Ok((Cow::Borrowed(&text[start..i]), i + 1)),
            b'\\' => {
                let mut out = String::with_capacity(i - start + 16);
                out.push_str(&text[start..i]);
                let end = unescape_into(text, i, &mut out)?;
                return Ok((Cow::Owned(out), end));
            }
            0..=0x1f => return Err(i),
            _ => i += 1,
        }
    }
    Err(i)
}

/// Continues reading a string at `i` (at a backslash or later), appending the unescaped
/// content to `out`; returns the position after the closing quote.
pub(crate) fn unescape_into(text: &str, mut i: usize, out: &mut String) -> Result<usize, usize> {
    let b = text.as_bytes();
    let mut run = i;
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push_str(&text[run..i]);
                return Ok(i + 1);
            }
            b'\\' => {
                out.push_str(&text[run..i]);
                let escape = *b.get(i + 1).ok_or(i)?;
                i += 2;
                match escape {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let high = hex4(b, i).ok_or(i)?;
                        i += 4;
                        let c = if (0xd800..0xdc00).contains(&high)
                            && b.get(i) == Some(&b'\\')
                            && b.get(i + 1) == Some(&b'u')
                        {
                            match hex4(b, i + 2) {
                                Some(low) if (0xdc00..0xe000).contains(&low) => {
                                    i += 6;
                                    char::from_u32(
                                        0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00),
                                    )
                                }
                                _ => None,
                            }
                        } else {
                            char::from_u32(high)
                        };
                        // A lone surrogate has no UTF-8 form; it becomes U+FFFD.
                        out.push(c.unwrap_or('\u{fffd}'));
                    }
                    _ => return Err(i - 1),
                }
                run = i;
            }
            0..=0x1f => return Err(i),
            _ => i += 1,
        }
    }
    Err(i)
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at + 4)?;
    let mut value = 0;
    for &d in digits {
        value = value * 16 + char::from(d).to_digit(16)?;
    }
    Some(value)
}

pub(crate) fn line_and_column(text: &str, pos: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..pos.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Result<Vec<Token<'_>>, String> {
        let mut t = Tokenizer::new(text);
        let mut out = Vec::new();
        loop {
            let token = t.next()?;
            out.push(token);
            if t.root_done {
                t.finish()?;
                return Ok(out);
            }
        }
    }

    #[test]
    fn token_stream() {
        let got =
            tokens(r#" {"a": [1.50, "x\u00e9", true, null, {}], "b": false} "#).expect("valid");
        assert_eq!(
            got,
            vec![
                Token::StartObject,
                Token::Name("a".into()),
                Token::StartArray,
                Token::Num("1.50"),
                Token::Str("xé".into()),
                Token::True,
                Token::Null,
                Token::StartObject,
                Token::EndObject,
                Token::EndArray,
                Token::Name("b".into()),
                Token::False,
                Token::EndObject,
            ]
        );
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "{",
            r#"{"a" 1}"#,
            r#"{"a": 1,}"#,
            r#"{"a": [1 2]}"#,
            r#"{"a": 01}"#,
            r#"{"a": tru}"#,
            r#"{"a": "\x"}"#,
            "{\"a\": \"\u{1}\"}",
            r#"{"a": 1} x"#,
            r#"{a: 1}"#,
        ] {
            assert!(tokens(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn surrogates() {
        let (s, _) = read_string(r#"\ud83d\ude00""#, 0).expect("valid");
        assert_eq!(s, "😀");
        let (s, _) = read_string(r#"\ud83dx""#, 0).expect("valid");
        assert_eq!(s, "\u{fffd}x");
    }
}
