//! Pattern text to sub-rules, with event-ruler's validation order and reasons.
//!
//! The structure follows event-ruler's `JsonRuleCompiler` step by step (it is what EventBridge
//! runs, and its reasons are what EventBridge reports): a streaming walk over tokens that keeps
//! a list of sub-rules, each a map from dotted field path to the field's value list. `$or`
//! copies the sub-rules so far once per branch; fields written after an `$or` land in every
//! copy; a repeated path replaces the earlier one (the last one wins).

use std::sync::Arc;

use super::ip;
use super::json::{Token, Tokenizer};
use super::number::{self, Bound, NumRange};
use super::value::{AnythingBut, Literal, Number, ValueMatcher, fold_case};
use super::wildcard::{self, Wildcard};

/// Most sub-rules an `$or` may expand to (EventBridge's documented limit).
pub(crate) const MAX_OR_COMBINATIONS: usize = 1000;

/// A field's value list: its matchers (ORed) and whether `{"exists": false}` is among them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FieldSpec {
    pub(crate) matchers: Vec<ValueMatcher>,
    pub(crate) absent: bool,
}

/// One branch of a pattern after `$or` expansion: every field must hold.
pub(crate) type SubRule = Vec<(Box<str>, Arc<FieldSpec>)>;

const OR: &str = "$or";

/// Names that may not appear as field names inside `$or` branches (event-ruler reserves them).
const RESERVED_IN_OR: &[&str] = &[
    "exactly",
    "equals-ignore-case",
    "prefix",
    "suffix",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "regex",
    "not-wildcard",
    "not-equals-ignore-case",
    "date-after",
    "date-on-or-after",
    "date-before",
    "date-on-or-before",
    "in-date-range",
    "ip-address-in-range",
    "ip-address-not-in-range",
];

type Result<T> = std::result::Result<T, String>;

fn fail<T>(reason: impl Into<String>) -> Result<T> {
    Err(reason.into())
}

const ONE_KEY: &str = "Only one key allowed in match expression";
const TOO_MANY: &str = "Too many elements in numeric expression";

/// Compiles pattern text into its sub-rules, or the reason it is not valid.
pub(crate) fn compile(text: &str) -> Result<Vec<SubRule>> {
    let mut compiler = Compiler {
        tokens: Tokenizer::new(text),
        path: Vec::new(),
    };
    if compiler.tokens.next()? != Token::StartObject {
        return fail("Filter is not an object");
    }
    let mut rules = Vec::new();
    compiler.object(&mut rules, false)?;
    compiler.tokens.finish()?;
    check_wildcard_complexity(&rules)?;
    Ok(rules)
}

struct Compiler<'a> {
    tokens: Tokenizer<'a>,
    path: Vec<String>,
}

impl<'a> Compiler<'a> {
    fn next(&mut self) -> Result<Token<'a>> {
        self.tokens.next()
    }

    fn expect_end_object(&mut self, reason: &str) -> Result<()> {
        match self.next()? {
            Token::EndObject => Ok(()),
            _ => fail(reason),
        }
    }

    fn extended_name(&self, step: &str) -> String {
        let mut name = String::new();
        for part in &self.path {
            name.push_str(part);
            name.push('.');
        }
        name.push_str(step);
        name
    }

    /// The members of an object whose `{` was read.
    fn object(&mut self, rules: &mut Vec<SubRule>, inside_or: bool) -> Result<()> {
        let mut any = false;
        loop {
            let step = match self.next()? {
                Token::EndObject => break,
                Token::Name(name) => name.into_owned(),
                _ => return fail("Malformed JSON: expected a member name"),
            };
            any = true;
            if step == OR {
                self.or(rules)?;
                continue;
            }
            if inside_or && RESERVED_IN_OR.contains(&step.as_str()) {
                return fail(format!(
                    "{step} is Ruler reserved fieldName which cannot be used inside $or."
                ));
            }
            match self.next()? {
                Token::StartObject => {
                    self.path.push(step);
                    self.object(rules, inside_or)?;
                    self.path.pop();
                }
                Token::StartArray => {
                    let name = self.extended_name(&step);
                    self.value_list(rules, name)?;
                }
                _ => return fail(format!("\"{step}\" must be an object or an array")),
            }
        }
        if !any {
            return fail("Empty objects are not allowed");
        }
        Ok(())
    }

    fn or(&mut self, rules: &mut Vec<SubRule>) -> Result<()> {
        let before = std::mem::take(rules);
        if self.next()? != Token::StartArray {
            return fail("It must be an Array followed with $or.");
        }
        let mut branches = 0;
        loop {
            match self.next()? {
                Token::EndArray => break,
                Token::StartObject => {
                    branches += 1;
                    let mut branch = before.clone();
                    if branch.is_empty() {
                        branch.push(SubRule::new());
                    }
                    self.object(&mut branch, true)?;
                    rules.extend(branch);
                    if rules.len() > MAX_OR_COMBINATIONS {
                        return fail(format!(
                            "The $or expansion of the event pattern exceeds {MAX_OR_COMBINATIONS} combinations"
                        ));
                    }
                }
                _ => return fail("Only JSON object is allowed in array of $or relationship."),
            }
        }
        if branches < 2 {
            return fail("There must have at least 2 Objects in $or relationship.");
        }
        Ok(())
    }

    /// A field's value list whose `[` was read.
    fn value_list(&mut self, rules: &mut Vec<SubRule>, name: String) -> Result<()> {
        let mut spec = FieldSpec {
            matchers: Vec::new(),
            absent: false,
        };
        let mut any = false;
        loop {
            let matcher = match self.next()? {
                Token::EndArray => break,
                Token::StartObject => self.match_expression()?,
                Token::Str(s) => match ip::range_if_ip(&s) {
                    Some(range) => Some(ValueMatcher::Ip(range)),
                    None => Some(ValueMatcher::Exact(Literal::Str(s.into()))),
                },
                Token::Num(lexeme) => Some(ValueMatcher::Exact(Literal::Num(Number::of(lexeme)))),
                Token::True => Some(ValueMatcher::Exact(Literal::True)),
                Token::False => Some(ValueMatcher::Exact(Literal::False)),
                Token::Null => Some(ValueMatcher::Exact(Literal::Null)),
                _ => return fail("Match value must be String, number, true, false, or null"),
            };
            any = true;
            match matcher {
                Some(m) => spec.matchers.push(m),
                None => spec.absent = true,
            }
        }
        if !any {
            return fail("Empty arrays are not allowed");
        }
        if rules.is_empty() {
            rules.push(SubRule::new());
        }
        let spec = Arc::new(spec);
        let name: Box<str> = name.into();
        for rule in rules.iter_mut() {
            match rule.iter_mut().find(|(path, _)| *path == name) {
                Some(entry) => entry.1 = Arc::clone(&spec),
                None => rule.push((name.clone(), Arc::clone(&spec))),
            }
        }
        Ok(())
    }

    /// One `{ "operator": … }` entry whose `{` was read; `None` is `{"exists": false}`.
    fn match_expression(&mut self) -> Result<Option<ValueMatcher>> {
        let operator = match self.next()? {
            Token::Name(name) => name.into_owned(),
            _ => return fail("Match expression name not found"),
        };
        let matcher = match operator.as_str() {
            "exactly" => {
                let Token::Str(s) = self.next()? else {
                    return fail("exact match pattern must be a string");
                };
                let m = ValueMatcher::Exact(Literal::Str(s.into()));
                self.expect_end_object(ONE_KEY)?;
                m
            }
            "prefix" => match self.next()? {
                Token::StartObject => self.ignore_case_affix("Prefix", "prefix")?,
                Token::Str(s) => {
                    let m = ValueMatcher::Prefix(s.into());
                    self.expect_end_object(ONE_KEY)?;
                    m
                }
                _ => return fail("prefix match pattern must be a string"),
            },
            "suffix" => match self.next()? {
                Token::StartObject => self.ignore_case_affix("Suffix", "suffix")?,
                Token::Str(s) => {
                    let m = ValueMatcher::Suffix(s.into());
                    self.expect_end_object(ONE_KEY)?;
                    m
                }
                _ => return fail("suffix match pattern must be a string"),
            },
            "numeric" => {
                if self.next()? != Token::StartArray {
                    return fail("Value of numeric must be an array.");
                }
                let range = self.numeric()?;
                self.expect_end_object(TOO_MANY)?;
                range
            }
            "anything-but" => self.anything_but()?,
            "exists" => {
                let exists = match self.next()? {
                    Token::True => true,
                    Token::False => false,
                    _ => return fail("exists match pattern must be either true or false."),
                };
                self.expect_end_object(ONE_KEY)?;
                if !exists {
                    return Ok(None);
                }
                ValueMatcher::Exists
            }
            "cidr" => {
                let Token::Str(s) = self.next()? else {
                    return fail("prefix match pattern must be a string");
                };
                let range = ip::parse_cidr(&s)?;
                self.expect_end_object(ONE_KEY)?;
                ValueMatcher::Cidr(range)
            }
            "equals-ignore-case" => {
                let Token::Str(s) = self.next()? else {
                    return fail("equals-ignore-case match pattern must be a string");
                };
                let m = ValueMatcher::EqualsIgnoreCase(fold_case(&s).into());
                self.expect_end_object(ONE_KEY)?;
                m
            }
            "wildcard" => {
                let Token::Str(s) = self.next()? else {
                    return fail("wildcard match pattern must be a string");
                };
                let w = Wildcard::parse(&s)?;
                self.expect_end_object(ONE_KEY)?;
                ValueMatcher::Wildcard(w)
            }
            other => return fail(format!("Unrecognized match type {other}")),
        };
        Ok(Some(matcher))
    }

    /// `{"prefix": {"equals-ignore-case": "…"}}` (or suffix) after the inner `{`.
    fn ignore_case_affix(&mut self, label: &str, key: &str) -> Result<ValueMatcher> {
        let op = match self.next()? {
            Token::Name(name) => name.into_owned(),
            _ => return fail(format!("{label} expression name not found")),
        };
        if op != "equals-ignore-case" {
            return fail(format!("Unsupported {key} pattern: {op}"));
        }
        let Token::Str(s) = self.next()? else {
            return fail("equals-ignore-case match pattern must be a string");
        };
        let folded: Box<str> = fold_case(&s).into();
        self.expect_end_object(ONE_KEY)?;
        self.expect_end_object(ONE_KEY)?;
        Ok(if key == "prefix" {
            ValueMatcher::PrefixIgnoreCase(folded)
        } else {
            ValueMatcher::SuffixIgnoreCase(folded)
        })
    }

    /// The contents of a `numeric` array whose `[` was read.
    fn numeric(&mut self) -> Result<ValueMatcher> {
        let operator = match self.next()? {
            Token::Str(op) => op.into_owned(),
            other => {
                return fail(format!(
                    "Invalid member in numeric match: {}",
                    text_of(&other)
                ));
            }
        };
        let first = self.next()?;
        let reason_name = match operator.as_str() {
            "=" => "equals",
            "<" | "<=" | ">" | ">=" => operator.as_str(),
            _ => return fail(format!("Unrecognized numeric range operator: {operator}")),
        };
        let Token::Num(value) = first else {
            return fail(format!("Value of {reason_name} must be numeric"));
        };
        let value = value.to_owned();
        match operator.as_str() {
            "=" | "<" | "<=" => {
                if self.next()? != Token::EndArray {
                    return fail(TOO_MANY);
                }
                let key = number::comparable(&value)?;
                let bound = Bound {
                    key,
                    inclusive: operator != "<",
                };
                let range = if operator == "=" {
                    NumRange {
                        low: Some(bound),
                        high: Some(bound),
                    }
                } else {
                    NumRange {
                        low: None,
                        high: Some(bound),
                    }
                };
                Ok(ValueMatcher::Numeric(range))
            }
            _ => {
                let low_inclusive = operator == ">=";
                let top_op = match self.next()? {
                    Token::EndArray => {
                        let key = number::comparable(&value)?;
                        return Ok(ValueMatcher::Numeric(NumRange {
                            low: Some(Bound {
                                key,
                                inclusive: low_inclusive,
                            }),
                            high: None,
                        }));
                    }
                    Token::Str(op) => op.into_owned(),
                    other => {
                        return fail(format!("Bad value in numeric range: {}", text_of(&other)));
                    }
                };
                if top_op != "<" && top_op != "<=" {
                    return fail(format!("Bad numeric range operator: {top_op}"));
                }
                let Token::Num(top) = self.next()? else {
                    return fail(format!("Value of {top_op} must be numeric"));
                };
                let top = top.to_owned();
                if self.next()? != Token::EndArray {
                    return fail("Too many terms in numeric range expression");
                }
                let low = number::comparable(&value)?;
                let high = number::comparable(&top)?;
                if low >= high {
                    return fail("Bottom must be less than top");
                }
                Ok(ValueMatcher::Numeric(NumRange {
                    low: Some(Bound {
                        key: low,
                        inclusive: low_inclusive,
                    }),
                    high: Some(Bound {
                        key: high,
                        inclusive: top_op == "<=",
                    }),
                }))
            }
        }
    }

    fn anything_but(&mut self) -> Result<ValueMatcher> {
        #[derive(PartialEq, Clone, Copy)]
        enum Kind {
            Plain,
            IgnoreCase,
            Prefix,
            Suffix,
            Wildcard,
        }
        let mut kind = Kind::Plain;
        let mut token = self.next()?;
        if token == Token::StartObject {
            let op = match self.next()? {
                Token::Name(name) => name.into_owned(),
                _ => return fail("Anything-But expression name not found"),
            };
            kind = match op.as_str() {
                "equals-ignore-case" => Kind::IgnoreCase,
                "prefix" => Kind::Prefix,
                "suffix" => Kind::Suffix,
                "wildcard" => Kind::Wildcard,
                _ => return fail(format!("Unsupported anything-but pattern: {op}")),
            };
            token = self.next()?;
        }
        if !matches!(token, Token::StartArray | Token::Str(_) | Token::Num(_)) {
            return fail("Value of anything-but must be an array or single string/number value.");
        }
        let wrong_type = match kind {
            Kind::IgnoreCase => {
                "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported."
            }
            Kind::Wildcard => "wildcard match pattern must be a string",
            _ => "prefix/suffix match pattern must be a string",
        };
        let mut strings: Vec<String> = Vec::new();
        let mut numbers = Vec::new();
        match token {
            Token::StartArray if kind == Kind::Plain => loop {
                match self.next()? {
                    Token::EndArray => break,
                    Token::Str(s) => strings.push(s.into_owned()),
                    Token::Num(n) => numbers.push(number::comparable(n)?),
                    _ => {
                        return fail(
                            "Inside anything but list, start|null|boolean is not supported.",
                        );
                    }
                }
            },
            Token::StartArray => loop {
                match self.next()? {
                    Token::EndArray => break,
                    Token::Str(s) => {
                        if matches!(kind, Kind::Prefix | Kind::Suffix) && s.is_empty() {
                            return fail("Null prefix/suffix not allowed");
                        }
                        strings.push(s.into_owned());
                    }
                    _ => return fail(wrong_type),
                }
            },
            Token::Str(s) => {
                if matches!(kind, Kind::Prefix | Kind::Suffix) && s.is_empty() {
                    return fail("Null prefix/suffix not allowed");
                }
                strings.push(s.into_owned());
            }
            Token::Num(n) if kind == Kind::Plain => numbers.push(number::comparable(n)?),
            _ => return fail(wrong_type),
        }
        if kind == Kind::Plain && strings.is_empty() == numbers.is_empty() {
            return fail(
                "Inside anything but list, either all values are number or string, mixed type is not supported",
            );
        }
        let but = match kind {
            Kind::Plain if numbers.is_empty() => AnythingBut::Strings(sorted(strings)),
            Kind::Plain => {
                numbers.sort_unstable();
                numbers.dedup();
                AnythingBut::Numbers(numbers)
            }
            Kind::IgnoreCase => AnythingBut::EqualsIgnoreCase(sorted(
                strings.iter().map(|s| fold_case(s)).collect(),
            )),
            Kind::Prefix => AnythingBut::Prefixes(sorted(strings)),
            Kind::Suffix => AnythingBut::Suffixes(sorted(strings)),
            Kind::Wildcard => {
                let mut list = Vec::with_capacity(strings.len());
                for s in &strings {
                    list.push(Wildcard::parse(s)?);
                }
                AnythingBut::Wildcards(list)
            }
        };
        self.expect_end_object(TOO_MANY)?;
        if kind != Kind::Plain {
            self.expect_end_object(TOO_MANY)?;
        }
        Ok(ValueMatcher::AnythingBut(but))
    }
}

fn sorted(mut list: Vec<String>) -> Vec<Box<str>> {
    list.sort_unstable();
    list.dedup();
    list.into_iter().map(String::into_boxed_str).collect()
}

/// Jackson's `getText()` for a token, as event-ruler quotes it in some reasons.
fn text_of(token: &Token<'_>) -> String {
    match token {
        Token::StartObject => "{".to_owned(),
        Token::EndObject => "}".to_owned(),
        Token::StartArray => "[".to_owned(),
        Token::EndArray => "]".to_owned(),
        Token::Name(s) | Token::Str(s) => s.to_string(),
        Token::Num(n) => (*n).to_owned(),
        Token::True => "true".to_owned(),
        Token::False => "false".to_owned(),
        Token::Null => "null".to_owned(),
    }
}

/// Rejects a pattern whose wildcards on one field are too complex for EventBridge.
fn check_wildcard_complexity(rules: &[SubRule]) -> Result<()> {
    let mut by_path: Vec<(&str, Vec<&Wildcard>)> = Vec::new();
    for rule in rules {
        for (path, spec) in rule {
            for m in &spec.matchers {
                let ValueMatcher::Wildcard(w) = m else {
                    continue;
                };
                let entry = match by_path.iter_mut().position(|(p, _)| *p == &**path) {
                    Some(i) => &mut by_path[i].1,
                    None => {
                        by_path.push((path, Vec::new()));
                        &mut by_path.last_mut().expect("just pushed").1
                    }
                };
                if !entry.contains(&w) {
                    entry.push(w);
                }
            }
        }
    }
    for (_, list) in by_path {
        if wildcard::complexity(&list) > wildcard::MAX_COMPLEXITY {
            return fail(wildcard::TOO_COMPLEX);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> String {
        compile(text).expect_err(text)
    }

    #[test]
    fn reasons_beyond_the_corpus() {
        assert_eq!(reason("[1]"), "Filter is not an object");
        assert_eq!(reason("{}"), "Empty objects are not allowed");
        assert_eq!(
            reason(r#"{"a": [{"numeric": [">", 5, "<", 5]}]}"#),
            "Bottom must be less than top"
        );
        assert_eq!(
            reason(r#"{"a": [{"numeric": []}]}"#),
            "Invalid member in numeric match: ]"
        );
        assert_eq!(
            reason(r#"{"a": [{"numeric": ["!", 5]}]}"#),
            "Unrecognized numeric range operator: !"
        );
        assert_eq!(
            reason(r#"{"a": [{"numeric": [">", 5, 6]}]}"#),
            "Bad value in numeric range: 6"
        );
        assert_eq!(
            reason(r#"{"a": [{"numeric": [">", 1, "<", 5, 6]}]}"#),
            "Too many terms in numeric range expression"
        );
        assert_eq!(
            reason(r#"{"a": [{"anything-but": 1E400}]}"#),
            "Cannot compare number : 1E400"
        );
        assert_eq!(reason(r#"{"a": [{}]}"#), "Match expression name not found");
        assert_eq!(
            reason(r#"{"a": [{"prefix": {}}]}"#),
            "Prefix expression name not found"
        );
        assert!(reason(r#"{"a": ["x"]} trailing"#).starts_with("Malformed JSON"));
        assert!(reason(r#"{"a": ["x"],}"#).starts_with("Malformed JSON"));
    }

    #[test]
    fn or_expansion_is_limited() {
        let branch = r#"[{"a": ["1"]}, {"b": ["2"]}]"#;
        let nested = |depth: usize| {
            let mut text = String::from(r#"{"x": ["y"]"#);
            for i in 0..depth {
                text.push_str(&format!(r#", "n{i}": {{"$or": {branch}}}"#));
            }
            text.push('}');
            text
        };
        // 2^9 = 512 combinations are fine, 2^10 = 1024 are not.
        assert_eq!(compile(&nested(9)).expect("within the limit").len(), 512);
        assert!(reason(&nested(10)).contains("exceeds 1000 combinations"));
    }

    #[test]
    fn the_last_duplicate_wins_and_later_fields_reach_every_branch() {
        let rules = compile(r#"{"a": ["1"], "$or": [{"b": ["2"]}, {"c": ["3"]}], "a": ["4"]}"#)
            .expect("valid");
        assert_eq!(rules.len(), 2);
        for rule in &rules {
            let a = rule
                .iter()
                .find(|(p, _)| &**p == "a")
                .expect("a in every branch");
            assert_eq!(
                a.1.matchers,
                vec![ValueMatcher::Exact(Literal::Str("4".into()))]
            );
        }
    }
}
