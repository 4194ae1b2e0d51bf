//! XML read by shape, for rest-xml request bodies.
//!
//! What a client writes is botocore's `RestXMLSerializer`; the rules for reading it are those
//! of botocore's `BaseXMLResponseParser`, applied on the server side: elements are matched by
//! local name (namespace prefixes ignored), the items of a non-flattened list or map are all
//! the children of its element whatever they are called, a flattened list or map repeats its
//! element in the parent, and `xmlAttribute` members come from the element's attributes.

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use serde_json::{Map, Value};

use crate::model::{Model, ShapeKind, ShapeRef};
use crate::rest::scalar_from_text;

/// Deeper documents are refused: no AWS shape nests this far, and the limit bounds the
/// recursion that reads them.
const MAX_DEPTH: usize = 100;

/// One element of a parsed document.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Element {
    /// The name as written, prefix included (`xsi:type` style).
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// The element's own character data, entities resolved.
    pub text: String,
}

impl Element {
    pub fn local_name(&self) -> &str {
        local(&self.name)
    }

    /// The value of attribute `name`, matched by its qualified name or else by local name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        let exact = self.attributes.iter().find(|(k, _)| k == name);
        exact
            .or_else(|| {
                self.attributes
                    .iter()
                    .find(|(k, _)| !k.starts_with("xmlns") && local(k) == local(name))
            })
            .map(|(_, v)| v.as_str())
    }
}

fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

fn start_element(e: &BytesStart<'_>) -> Result<Element, String> {
    let mut el = Element {
        name: e.name().as_ref().to_string(),
        ..Element::default()
    };
    for attr in e.attributes() {
        let attr = attr.map_err(|err| err.to_string())?;
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| err.to_string())?;
        el.attributes
            .push((attr.key.as_ref().to_string(), value.into_owned()));
    }
    Ok(el)
}

/// Parses a document into its root element. Errors are messages for a `MalformedXML` reply.
pub fn parse(body: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| "The XML document is not valid UTF-8.".to_string())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let attach =
        |stack: &mut Vec<Element>, root: &mut Option<Element>, el: Element| -> Result<(), String> {
            match stack.last_mut() {
                Some(parent) => parent.children.push(el),
                None if root.is_none() => *root = Some(el),
                None => return Err("The XML document has more than one root element.".into()),
            }
            Ok(())
        };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("The XML document is not well-formed: {e}."))?;
        match event {
            Event::Start(e) => {
                if root.is_some() {
                    return Err("The XML document has more than one root element.".into());
                }
                if stack.len() >= MAX_DEPTH {
                    return Err("The XML document is nested too deeply.".into());
                }
                stack.push(start_element(&e)?);
            }
            Event::Empty(e) => {
                let el = start_element(&e)?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or("The XML document has an unmatched end tag.")?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::Text(t) => match stack.last_mut() {
                Some(top) => top.text.push_str(&t.xml10_content()),
                None if t.trim().is_empty() => {}
                None => return Err("The XML document has text outside its root element.".into()),
            },
            Event::CData(c) => match stack.last_mut() {
                Some(top) => top.text.push_str(&c.xml10_content()),
                None => return Err("The XML document has text outside its root element.".into()),
            },
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&r)
                        .ok_or_else(|| {
                            format!("The XML document uses the undefined entity &{};.", &*r)
                        })?
                        .to_string(),
                    Err(e) => {
                        return Err(format!(
                            "The XML document has an invalid character reference: {e}."
                        ));
                    }
                };
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&resolved),
                    None => {
                        return Err("The XML document has text outside its root element.".into());
                    }
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err("The XML document ends before its root element is closed.".into());
    }
    root.ok_or_else(|| "The XML document has no root element.".into())
}

/// Reads `el` as a value of the shape of `r`.
pub fn read_value(model: &Model, r: &ShapeRef, el: &Element) -> Result<Value, String> {
    let shape = model.shape(&r.shape);
    match shape.kind {
        ShapeKind::Structure => read_members(model, &r.shape, el).map(Value::Object),
        ShapeKind::List => {
            let Some(member) = shape.member.as_deref() else {
                return Ok(Value::Array(Vec::new()));
            };
            el.children
                .iter()
                .map(|item| read_value(model, member, item))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        ShapeKind::Map => read_entries(model, r, el.children.iter()).map(Value::Object),
        _ => scalar_from_text(model, r, &el.text),
    }
}

/// Reads the members of structure `shape_name` from the children and attributes of `el`.
/// Members bound to a URI, header or query string are not in the body and are skipped.
pub fn read_members(
    model: &Model,
    shape_name: &str,
    el: &Element,
) -> Result<Map<String, Value>, String> {
    let shape = model.shape(shape_name);
    let mut out = Map::new();
    for (name, r) in &shape.members {
        if r.location.is_some() {
            continue;
        }
        if r.xml_attribute {
            let attr_name = r.location_name.as_deref().unwrap_or(name);
            if let Some(text) = el.attribute(attr_name) {
                out.insert(name.clone(), scalar_from_text(model, r, text)?);
            }
            continue;
        }
        let member_shape = model.shape(&r.shape);
        let flattened = r.flattened || member_shape.flattened;
        let mut xml_name = r.location_name.as_deref().unwrap_or(name);
        if flattened
            && member_shape.kind == ShapeKind::List
            && let Some(item_name) = member_shape
                .member
                .as_deref()
                .and_then(|m| m.location_name.as_deref())
        {
            xml_name = item_name;
        }
        let xml_name = local(xml_name);
        let mut matches = el
            .children
            .iter()
            .filter(|c| c.local_name() == xml_name)
            .peekable();
        if matches.peek().is_none() {
            continue;
        }
        let value = match (member_shape.kind, flattened) {
            (ShapeKind::List, true) => {
                let Some(member) = member_shape.member.as_deref() else {
                    continue;
                };
                matches
                    .map(|item| read_value(model, member, item))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array)?
            }
            (ShapeKind::Map, true) => read_entries(model, r, matches).map(Value::Object)?,
            _ => match matches.next() {
                Some(child) => read_value(model, r, child)?,
                None => continue,
            },
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Reads map entries, each an element holding a key and a value element.
fn read_entries<'e>(
    model: &Model,
    r: &ShapeRef,
    entries: impl Iterator<Item = &'e Element>,
) -> Result<Map<String, Value>, String> {
    let shape = model.shape(&r.shape);
    let (Some(key_ref), Some(value_ref)) = (shape.key.as_deref(), shape.value.as_deref()) else {
        return Ok(Map::new());
    };
    let key_name = local(key_ref.location_name.as_deref().unwrap_or("key"));
    let value_name = local(value_ref.location_name.as_deref().unwrap_or("value"));
    let mut out = Map::new();
    for entry in entries {
        let key = entry.children.iter().find(|c| c.local_name() == key_name);
        let value = entry.children.iter().find(|c| c.local_name() == value_name);
        let (Some(key), Some(value)) = (key, value) else {
            return Err(format!(
                "A map entry <{}> lacks its <{key_name}> or <{value_name}>.",
                entry.name
            ));
        };
        out.insert(key.text.clone(), read_value(model, value_ref, value)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = r#"{
        "metadata": {"protocol": "rest-xml", "apiVersion": "2020-01-01", "endpointPrefix": "t"},
        "operations": {},
        "shapes": {
            "Root": {"type": "structure", "members": {
                "Name": {"shape": "S"},
                "Id": {"shape": "S", "locationName": "id", "xmlAttribute": true},
                "Kind": {"shape": "S", "locationName": "xsi:type", "xmlAttribute": true},
                "Tags": {"shape": "TagMap"},
                "Flat": {"shape": "FlatMap", "locationName": "Entry"},
                "Items": {"shape": "Items"},
                "Flags": {"shape": "FlatList", "locationName": "Flag"},
                "Count": {"shape": "I"},
                "On": {"shape": "B"},
                "Data": {"shape": "Blob"},
                "At": {"shape": "T"}
            }},
            "S": {"type": "string"},
            "I": {"type": "integer"},
            "B": {"type": "boolean"},
            "Blob": {"type": "blob"},
            "T": {"type": "timestamp"},
            "TagMap": {"type": "map", "key": {"shape": "S"}, "value": {"shape": "S"}},
            "FlatMap": {"type": "map", "key": {"shape": "S", "locationName": "K"},
                        "value": {"shape": "I", "locationName": "V"}, "flattened": true},
            "Items": {"type": "list", "member": {"shape": "S", "locationName": "Item"}},
            "FlatList": {"type": "list", "member": {"shape": "S"}, "flattened": true}
        }
    }"#;

    fn read(xml: &str) -> Result<Value, String> {
        let model = Model::from_json("t", MODEL).map_err(|e| e.0)?;
        let root = parse(xml.as_bytes())?;
        read_value(
            &model,
            &ShapeRef {
                shape: "Root".into(),
                ..ShapeRef::default()
            },
            &root,
        )
    }

    #[test]
    fn reads_by_shape() {
        let doc = r#"<?xml version="1.0"?>
            <Root xmlns="urn:x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="7" xsi:type="Group">
              <Name>a &amp; b&#x21;<![CDATA[<c>]]></Name>
              <Tags><entry><key>k1</key><value>v1</value></entry><entry><key>k2</key><value/></entry></Tags>
              <Entry><K>x</K><V>1</V></Entry><Entry><K>y</K><V>2</V></Entry>
              <Items><Item>i1</Item><Item>i2</Item></Items>
              <Flag>f1</Flag><Name2/><Flag>f2</Flag>
              <Count> 42 </Count><On>true</On><Data>aGk=</Data>
              <At>2024-01-02T03:04:05.500Z</At>
            </Root>"#;
        let v = read(doc).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "Name": "a & b!<c>", "Id": "7", "Kind": "Group",
                "Tags": {"k1": "v1", "k2": ""}, "Flat": {"x": 1, "y": 2},
                "Items": ["i1", "i2"], "Flags": ["f1", "f2"],
                "Count": 42, "On": true, "Data": "aGk=", "At": 1704164645.5
            })
        );
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        assert_eq!(
            read("\u{feff}<Root><Name>x</Name></Root>").unwrap(),
            serde_json::json!({"Name": "x"})
        );
    }

    #[test]
    fn empty_containers() {
        let v = read("<Root><Items/><Tags></Tags></Root>").unwrap();
        assert_eq!(v, serde_json::json!({"Items": [], "Tags": {}}));
    }

    #[test]
    fn rejects_bad_documents() {
        for doc in [
            "",
            "<Root>",
            "<Root></Other>",
            "<Root/><Root/>",
            "text<Root/>",
            "<Root>&bogus;</Root>",
            "<Root><Count>x</Count></Root>",
            "<Root><On>yes</On></Root>",
            "<Root><Data>!!</Data></Root>",
            "<Root><Tags><entry><key>k</key></entry></Tags></Root>",
            "<Root a=\"1\" a=\"2\"/>",
        ] {
            assert!(read(doc).is_err(), "{doc:?} should be rejected");
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
    }
}
