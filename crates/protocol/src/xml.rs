//! XML written from shapes, shared by the query and rest-xml protocols.

use serde_json::Value;

use crate::model::{Model, ShapeKind, ShapeRef};
use crate::timestamp;

/// A small XML writer; AWS's response documents need nothing more.
#[derive(Debug, Default)]
pub struct XmlWriter {
    pub out: String,
}

impl XmlWriter {
    pub fn new() -> Self {
        XmlWriter {
            out: String::with_capacity(512),
        }
    }

    pub fn declaration(&mut self) {
        self.out
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    }

    pub fn start(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    pub fn start_with_attrs(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_into(&mut self.out, v);
            self.out.push('"');
        }
        self.out.push('>');
    }

    pub fn end(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    pub fn text(&mut self, text: &str) {
        escape_into(&mut self.out, text);
    }

    pub fn element(&mut self, name: &str, text: &str) {
        self.start(name);
        self.text(text);
        self.end(name);
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

/// Escapes text for element content and attribute values. Carriage returns and the other
/// control characters SQS allows are written as character references so they survive parsing.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            // XML 1.0 cannot carry other control characters even as references; no AWS
            // value that passed validation holds one, so dropping them keeps the document valid.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
}

/// The element name of a structure member.
pub fn member_element_name<'a>(member_name: &'a str, r: &'a ShapeRef) -> &'a str {
    r.location_name.as_deref().unwrap_or(member_name)
}

/// Writes the members of a structure value (not the structure's own element).
pub fn write_members(w: &mut XmlWriter, model: &Model, shape_name: &str, value: &Value) {
    let shape = model.shape(shape_name);
    let Value::Object(obj) = value else { return };
    for (name, r) in &shape.members {
        if r.xml_attribute || r.location.is_some() {
            continue;
        }
        if let Some(v) = obj.get(name)
            && !v.is_null()
        {
            write_value(w, model, member_element_name(name, r), r, v);
        }
    }
}

/// Writes `value` of shape `r` as element `name` (or as repeated elements when flattened).
pub fn write_value(w: &mut XmlWriter, model: &Model, name: &str, r: &ShapeRef, value: &Value) {
    let shape = model.shape(&r.shape);
    match shape.kind {
        ShapeKind::Structure => {
            let attrs = structure_attributes(model, &r.shape, value);
            let ns = r.xml_namespace.as_ref().or(shape.xml_namespace.as_ref());
            let mut attr_refs: Vec<(String, String)> = attrs;
            if let Some(ns) = ns {
                let key = match ns.prefix() {
                    Some(p) => format!("xmlns:{p}"),
                    None => "xmlns".to_string(),
                };
                attr_refs.push((key, ns.uri().to_string()));
            }
            let borrowed: Vec<(&str, &str)> = attr_refs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            w.start_with_attrs(name, &borrowed);
            write_members(w, model, &r.shape, value);
            w.end(name);
        }
        ShapeKind::List => {
            let Value::Array(items) = value else { return };
            let Some(member) = shape.member.as_deref() else {
                return;
            };
            if r.flattened || shape.flattened {
                let item_name = member.location_name.as_deref().unwrap_or(name);
                for item in items {
                    write_value(w, model, item_name, member, item);
                }
            } else {
                let item_name = member.location_name.as_deref().unwrap_or("member");
                w.start(name);
                for item in items {
                    write_value(w, model, item_name, member, item);
                }
                w.end(name);
            }
        }
        ShapeKind::Map => {
            let Value::Object(entries) = value else {
                return;
            };
            let (Some(key_ref), Some(value_ref)) = (shape.key.as_deref(), shape.value.as_deref())
            else {
                return;
            };
            let key_name = key_ref.location_name.as_deref().unwrap_or("key");
            let value_name = value_ref.location_name.as_deref().unwrap_or("value");
            let flattened = r.flattened || shape.flattened;
            if !flattened {
                w.start(name);
            }
            for (k, v) in entries {
                w.start(if flattened { name } else { "entry" });
                w.element(key_name, k);
                write_value(w, model, value_name, value_ref, v);
                w.end(if flattened { name } else { "entry" });
            }
            if !flattened {
                w.end(name);
            }
        }
        _ => {
            w.start(name);
            w.text(&scalar_text(model, r, value));
            w.end(name);
        }
    }
}

fn structure_attributes(model: &Model, shape_name: &str, value: &Value) -> Vec<(String, String)> {
    let shape = model.shape(shape_name);
    let Value::Object(obj) = value else {
        return Vec::new();
    };
    shape
        .members
        .iter()
        .filter(|(_, r)| r.xml_attribute)
        .filter_map(|(name, r)| {
            let v = obj.get(name)?;
            Some((
                r.location_name.clone().unwrap_or_else(|| name.clone()),
                scalar_text(model, r, v),
            ))
        })
        .collect()
}

/// A scalar as XML text or a header value: booleans lowercase, timestamps per format.
pub fn scalar_text(model: &Model, r: &ShapeRef, value: &Value) -> String {
    let shape = model.shape(&r.shape);
    match (shape.kind, value) {
        (ShapeKind::Timestamp, Value::Number(n)) => {
            let format = r
                .timestamp_format
                .as_deref()
                .or(shape.timestamp_format.as_deref())
                .unwrap_or("iso8601");
            timestamp::format_text(n.as_f64().unwrap_or(0.0), format)
        }
        (_, Value::String(s)) => s.clone(),
        (_, Value::Bool(b)) => b.to_string(),
        (_, Value::Number(n)) => n.to_string(),
        (_, Value::Null) => String::new(),
        (_, other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut s = String::new();
        escape_into(&mut s, "a<b>&\"c'\r\n\u{1}");
        assert_eq!(s, "a&lt;b&gt;&amp;&quot;c&apos;&#xD;\n");
    }
}
