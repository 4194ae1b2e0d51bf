//! Distributed Map's data formats, IO-free: what an `ItemReader` makes of an object's bytes
//! (`ReaderConfig`: JSON, JSONL, CSV with `CSVHeaderLocation`/`CSVHeaders`/`CSVDelimiter`,
//! an S3 Inventory `manifest.json` and its gzip'd CSV data files, an Athena data manifest),
//! and what a `ResultWriter` makes of the children's results (`WriterConfig`: `OutputType`
//! JSON | JSONL, `Transformation` NONE | COMPACT | FLATTEN). `maprun.rs` does the S3 reads and
//! writes. Errors are causes of `States.ItemReaderFailed` / `States.ResultWriterFailed`.

use std::io::Read;

use serde_json::{Map, Value};

/// `ReaderConfig` of a `getObject` reader.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReaderConfig {
    /// CSV, JSON, JSONL, PARQUET or MANIFEST.
    pub input_type: String,
    /// `CSVHeaderLocation: GIVEN`: these headers, and the first row is data.
    pub given_headers: Option<Vec<String>>,
    pub delimiter: char,
    /// `ManifestType`: S3_INVENTORY (what `InputType: MANIFEST` reads) or ATHENA_DATA.
    pub manifest_type: Option<String>,
}

pub(crate) fn reader_config(cfg: &Value) -> Result<ReaderConfig, String> {
    let text = |f: &str| cfg.get(f).and_then(Value::as_str);
    let input_type = text("InputType").unwrap_or("JSON").to_string();
    if !["CSV", "JSON", "JSONL", "PARQUET", "MANIFEST"].contains(&input_type.as_str()) {
        return Err(format!(
            "The ReaderConfig InputType {input_type} is not one of CSV, JSON, JSONL, PARQUET, MANIFEST."
        ));
    }
    let delimiter = match text("CSVDelimiter").unwrap_or("COMMA") {
        "COMMA" => ',',
        "PIPE" => '|',
        "SEMICOLON" => ';',
        "SPACE" => ' ',
        "TAB" => '\t',
        other => {
            return Err(format!(
                "The ReaderConfig CSVDelimiter {other} is not one of COMMA, PIPE, SEMICOLON, SPACE, TAB."
            ));
        }
    };
    let given_headers = match text("CSVHeaderLocation").unwrap_or("FIRST_ROW") {
        "FIRST_ROW" => None,
        "GIVEN" => Some(
            cfg.get("CSVHeaders")
                .and_then(Value::as_array)
                .ok_or("CSVHeaderLocation GIVEN needs CSVHeaders.")?
                .iter()
                .map(|h| {
                    h.as_str()
                        .map(str::to_string)
                        .ok_or("CSVHeaders are strings.")
                })
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(format!(
                "The ReaderConfig CSVHeaderLocation {other} is not one of FIRST_ROW, GIVEN."
            ));
        }
    };
    let manifest_type = text("ManifestType").map(str::to_string);
    if let Some(m) = &manifest_type
        && m != "S3_INVENTORY"
        && m != "ATHENA_DATA"
    {
        return Err(format!(
            "The ReaderConfig ManifestType {m} is not one of ATHENA_DATA, S3_INVENTORY."
        ));
    }
    Ok(ReaderConfig {
        input_type,
        given_headers,
        delimiter,
        manifest_type,
    })
}

/// The bytes of an object, inflated when they are gzip (S3 Inventory writes `.csv.gz`).
pub(crate) fn maybe_gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| format!("The object is not valid gzip: {e}"))?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

/// The items of one data object of type `cfg.input_type` (not MANIFEST).
pub(crate) fn parse_items(text: &str, cfg: &ReaderConfig) -> Result<Vec<Value>, String> {
    match cfg.input_type.as_str() {
        "JSON" => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(a)) => Ok(a),
            Ok(_) => Err("The object does not hold a JSON array.".into()),
            Err(e) => Err(format!("The object is not valid JSON: {e}")),
        },
        "JSONL" => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(n, l)| {
                serde_json::from_str(l)
                    .map_err(|e| format!("Line {} of the JSON Lines is not JSON: {e}", n + 1))
            })
            .collect(),
        "CSV" => Ok(csv_items(text, cfg)),
        other => Err(format!(
            "The ReaderConfig InputType {other} is not supported by tsumiki."
        )),
    }
}

/// CSV rows as objects keyed by the header row or the given headers; every value a string.
fn csv_items(text: &str, cfg: &ReaderConfig) -> Vec<Value> {
    let mut rows = csv_rows(text, cfg.delimiter).into_iter();
    let headers = match &cfg.given_headers {
        Some(h) => h.clone(),
        None => rows.next().unwrap_or_default(),
    };
    rows.map(|r| row_object(&headers, r)).collect()
}

fn row_object(headers: &[String], row: Vec<String>) -> Value {
    let mut o = Map::new();
    for (h, v) in headers.iter().zip(row) {
        o.insert(h.clone(), Value::String(v));
    }
    Value::Object(o)
}

/// Rows of a delimited text (RFC 4180: quoted fields with delimiters, doubled quotes, line
/// breaks); blank lines are skipped.
pub(crate) fn csv_rows(text: &str, delimiter: char) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    let mut end_row = |row: &mut Vec<String>, field: &mut String, was_quoted: bool| {
        if row.is_empty() && field.is_empty() && !was_quoted {
            return;
        }
        row.push(std::mem::take(field));
        rows.push(std::mem::take(row));
    };
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => {
                quoted = true;
                was_quoted = true;
            }
            (false, c) if c == delimiter => {
                row.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '\r') => {}
            (false, '\n') => {
                end_row(&mut row, &mut field, was_quoted);
                was_quoted = false;
            }
            (false, c) => field.push(c),
        }
    }
    end_row(&mut row, &mut field, was_quoted);
    rows
}

/// What an S3 Inventory `manifest.json` names: where the data files are, their keys, and the
/// columns of their rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Inventory {
    pub bucket: String,
    pub files: Vec<String>,
    pub schema: Vec<String>,
}

/// Reads a `manifest.json`; its data files are in `destinationBucket` (an S3 ARN), or else in
/// `manifest_bucket`. Step Functions reads CSV inventories only.
pub(crate) fn inventory_manifest(text: &str, manifest_bucket: &str) -> Result<Inventory, String> {
    let m: Value = serde_json::from_str(text)
        .map_err(|e| format!("The S3 Inventory manifest is not valid JSON: {e}"))?;
    let format = m.get("fileFormat").and_then(Value::as_str).unwrap_or("CSV");
    if !format.eq_ignore_ascii_case("CSV") {
        return Err(format!(
            "The S3 Inventory manifest's fileFormat is {format}; Step Functions reads CSV inventories only."
        ));
    }
    let schema: Vec<String> = m
        .get("fileSchema")
        .and_then(Value::as_str)
        .ok_or("The S3 Inventory manifest has no fileSchema.")?
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    let files = m
        .get("files")
        .and_then(Value::as_array)
        .ok_or("The S3 Inventory manifest has no files.")?
        .iter()
        .map(|f| {
            f.get("key")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or("An S3 Inventory manifest file has no key.")
        })
        .collect::<Result<_, _>>()?;
    let bucket = m
        .get("destinationBucket")
        .and_then(Value::as_str)
        .map(|b| b.strip_prefix("arn:aws:s3:::").unwrap_or(b).to_string())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| manifest_bucket.to_string());
    Ok(Inventory {
        bucket,
        files,
        schema,
    })
}

/// The items of one inventory data file: a row per object, no header row, keyed by the
/// manifest's `fileSchema` (values stay strings, as in the file).
pub(crate) fn inventory_items(text: &str, schema: &[String]) -> Vec<Value> {
    csv_rows(text, ',')
        .into_iter()
        .map(|r| row_object(schema, r))
        .collect()
}

/// The data files an Athena manifest lists, one `s3://bucket/key` a line.
pub(crate) fn athena_manifest(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.strip_prefix("s3://")
                .and_then(|r| r.split_once('/'))
                .map(|(b, k)| (b.to_string(), k.to_string()))
                .ok_or_else(|| format!("The Athena manifest line {l} is not an s3:// URI."))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transformation {
    None,
    Compact,
    Flatten,
}

/// `ResultWriter.WriterConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriterConfig {
    pub jsonl: bool,
    pub transformation: Transformation,
}

/// The writer's settings; without `WriterConfig`, AWS's defaults: NONE when the results go
/// to S3, COMPACT when they are the state's output.
pub(crate) fn writer_config(cfg: Option<&Value>, to_s3: bool) -> Result<WriterConfig, String> {
    let text = |f: &str| cfg.and_then(|c| c.get(f)).and_then(Value::as_str);
    let jsonl = match text("OutputType").unwrap_or("JSON") {
        "JSON" => false,
        "JSONL" => true,
        other => {
            return Err(format!(
                "The WriterConfig OutputType {other} is not one of JSON, JSONL."
            ));
        }
    };
    let transformation = match text("Transformation") {
        None if to_s3 => Transformation::None,
        None => Transformation::Compact,
        Some("NONE") => Transformation::None,
        Some("COMPACT") => Transformation::Compact,
        Some("FLATTEN") => Transformation::Flatten,
        Some(other) => {
            return Err(format!(
                "The WriterConfig Transformation {other} is not one of NONE, COMPACT, FLATTEN."
            ));
        }
    };
    Ok(WriterConfig {
        jsonl,
        transformation,
    })
}

/// The children's results (each as `child_entry` reports it, in item order) transformed:
/// NONE keeps the whole entry; COMPACT the output; FLATTEN the output with arrays spliced in.
/// A child that did not succeed stays whole whatever the transformation (AWS's rule).
pub(crate) fn transform(entries: &[&Value], t: Transformation) -> Vec<Value> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let output = e.get("Output").and_then(Value::as_str);
        match (t, output) {
            (Transformation::None, _) | (_, None) => out.push((*e).clone()),
            (_, Some(text)) => {
                let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                match v {
                    Value::Array(a) if t == Transformation::Flatten => out.extend(a),
                    v => out.push(v),
                }
            }
        }
    }
    out
}

/// A results file's body: a JSON array, or JSON Lines.
pub(crate) fn encode(values: &[Value], jsonl: bool) -> Vec<u8> {
    if !jsonl {
        return serde_json::to_vec(values).unwrap_or_default();
    }
    let mut out = Vec::new();
    for v in values {
        out.extend(serde_json::to_vec(v).unwrap_or_default());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    proptest! {
        // Items come from users' S3 objects: no input may panic a reader, whatever its bytes.
        #[test]
        fn readers_never_panic_on_any_object(
            text in "(\\PC|[\"\n\r,;|\t{}\\[\\]:])*",
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            kind in 0usize..5,
            delimiter in prop::sample::select(vec![',', '|', ';', ' ', '\t']),
        ) {
            let input_type = ["CSV", "JSON", "JSONL", "MANIFEST", "PARQUET"][kind];
            let cfg = ReaderConfig {
                input_type: input_type.into(),
                given_headers: (kind % 2 == 0).then(|| vec!["a".into(), "b".into()]),
                delimiter,
                manifest_type: None,
            };
            let _ = parse_items(&text, &cfg);
            let _ = csv_rows(&text, delimiter);
            let _ = inventory_manifest(&text, "bucket");
            let _ = inventory_items(&text, &["Bucket".into(), "Key".into()]);
            let _ = athena_manifest(&text);
            let _ = maybe_gunzip(&bytes);
        }
    }

    fn cfg(v: Value) -> ReaderConfig {
        reader_config(&v).unwrap()
    }

    #[test]
    fn csv_rows_follow_rfc_4180() {
        let rows = csv_rows("a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\n2,,last\n", ',');
        assert_eq!(
            rows,
            vec![
                vec!["a", "b", "c"],
                vec!["1", "x, y", "say \"hi\""],
                vec!["2", "", "last"],
            ]
        );
        assert_eq!(csv_rows("h\nv", ','), vec![vec!["h"], vec!["v"]]);
        assert_eq!(csv_rows("h\n\nv\n\n", ','), vec![vec!["h"], vec!["v"]]);
        assert_eq!(csv_rows("\"\"\n", ','), vec![vec![""]]);
        assert_eq!(
            csv_rows("\"multi\nline\",x\n", ','),
            vec![vec!["multi\nline", "x"]]
        );
    }

    #[test]
    fn delimiters_and_given_headers() {
        let c = cfg(json!({"InputType": "CSV", "CSVDelimiter": "PIPE"}));
        assert_eq!(
            parse_items("a|b\n1|x,y\n", &c).unwrap(),
            vec![json!({"a": "1", "b": "x,y"})]
        );
        let c = cfg(json!({"InputType": "CSV", "CSVDelimiter": "TAB",
            "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["u", "v"]}));
        assert_eq!(
            parse_items("1\t2\n3\t4\n", &c).unwrap(),
            vec![json!({"u": "1", "v": "2"}), json!({"u": "3", "v": "4"})]
        );
        for (name, d) in [("SEMICOLON", ';'), ("SPACE", ' '), ("COMMA", ',')] {
            assert_eq!(cfg(json!({"CSVDelimiter": name})).delimiter, d);
        }
        assert!(reader_config(&json!({"CSVDelimiter": "COLON"})).is_err());
        assert!(reader_config(&json!({"InputType": "XML"})).is_err());
        assert!(reader_config(&json!({"CSVHeaderLocation": "GIVEN"})).is_err());
        assert!(reader_config(&json!({"ManifestType": "OTHER"})).is_err());
    }

    #[test]
    fn json_and_json_lines() {
        let c = cfg(json!({"InputType": "JSONL"}));
        assert_eq!(
            parse_items("{\"a\":1}\n\n[2]\n\"s\"\n", &c).unwrap(),
            vec![json!({"a": 1}), json!([2]), json!("s")]
        );
        assert!(
            parse_items("{\"a\":1}\n{oops\n", &c)
                .unwrap_err()
                .contains("Line 2")
        );
        let c = cfg(json!({}));
        assert_eq!(parse_items("[1,2]", &c).unwrap(), vec![json!(1), json!(2)]);
        assert!(parse_items("{}", &c).is_err());
        assert!(parse_items("[1,2]", &cfg(json!({"InputType": "PARQUET"}))).is_err());
    }

    #[test]
    fn gzip_is_inflated_and_plain_passes() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"\"b\",\"k1\"\n").unwrap();
        let bytes = gz.finish().unwrap();
        assert_eq!(maybe_gunzip(&bytes).unwrap(), b"\"b\",\"k1\"\n");
        assert_eq!(maybe_gunzip(b"plain").unwrap(), b"plain");
        assert!(maybe_gunzip(&[0x1f, 0x8b, 0, 1]).is_err());
    }

    #[test]
    fn inventory_manifest_and_rows() {
        let m = json!({
            "sourceBucket": "src", "destinationBucket": "arn:aws:s3:::dest",
            "version": "2016-11-30", "creationTimestamp": "1514944800000",
            "fileFormat": "CSV", "fileSchema": "Bucket, Key, Size, LastModifiedDate",
            "files": [{"key": "inv/data/a.csv.gz", "size": 10, "MD5checksum": "x"},
                      {"key": "inv/data/b.csv.gz", "size": 10, "MD5checksum": "y"}]});
        let inv = inventory_manifest(&m.to_string(), "other").unwrap();
        assert_eq!(inv.bucket, "dest");
        assert_eq!(inv.files, vec!["inv/data/a.csv.gz", "inv/data/b.csv.gz"]);
        assert_eq!(
            inv.schema,
            vec!["Bucket", "Key", "Size", "LastModifiedDate"]
        );
        let items = inventory_items(
            "\"src\",\"csvDataset/titles.csv\",\"3399671\",\"2022-11-16T00:29:32.000Z\"\n",
            &inv.schema,
        );
        assert_eq!(
            items,
            vec![
                json!({"Bucket": "src", "Key": "csvDataset/titles.csv", "Size": "3399671",
                         "LastModifiedDate": "2022-11-16T00:29:32.000Z"})
            ]
        );
        let orc = json!({"fileFormat": "ORC", "fileSchema": "x", "files": []});
        assert!(inventory_manifest(&orc.to_string(), "b").is_err());
        let bare = json!({"fileSchema": "Bucket, Key", "files": []});
        assert_eq!(
            inventory_manifest(&bare.to_string(), "b").unwrap().bucket,
            "b"
        );
        assert!(inventory_manifest("nope", "b").is_err());
    }

    #[test]
    fn athena_manifest_lists_uris() {
        assert_eq!(
            athena_manifest("s3://b/q/1.csv\n\ns3://c/2.csv\n").unwrap(),
            vec![
                ("b".to_string(), "q/1.csv".to_string()),
                ("c".to_string(), "2.csv".to_string())
            ]
        );
        assert!(athena_manifest("http://x/y").is_err());
    }

    #[test]
    fn writer_transformations() {
        let ok = json!({"Status": "SUCCEEDED", "Output": "[1,[2]]", "Name": "a"});
        let obj = json!({"Status": "SUCCEEDED", "Output": "{\"x\":1}", "Name": "b"});
        let bad = json!({"Status": "FAILED", "Error": "E", "Cause": "c", "Name": "c"});
        let all = [&ok, &obj, &bad];
        assert_eq!(
            transform(&all, Transformation::None),
            vec![ok.clone(), obj.clone(), bad.clone()]
        );
        assert_eq!(
            transform(&all, Transformation::Compact),
            vec![json!([1, [2]]), json!({"x": 1}), bad.clone()]
        );
        assert_eq!(
            transform(&all, Transformation::Flatten),
            vec![json!(1), json!([2]), json!({"x": 1}), bad.clone()]
        );
        assert_eq!(
            encode(&[json!(1), json!({"a": 2})], true),
            b"1\n{\"a\":2}\n"
        );
        assert_eq!(
            encode(&[json!(1), json!({"a": 2})], false),
            b"[1,{\"a\":2}]"
        );
        let w = writer_config(None, true).unwrap();
        assert_eq!((w.jsonl, w.transformation), (false, Transformation::None));
        let w = writer_config(None, false).unwrap();
        assert_eq!(w.transformation, Transformation::Compact);
        let w = writer_config(
            Some(&json!({"OutputType": "JSONL", "Transformation": "FLATTEN"})),
            true,
        )
        .unwrap();
        assert_eq!((w.jsonl, w.transformation), (true, Transformation::Flatten));
        assert!(writer_config(Some(&json!({"OutputType": "CSV"})), true).is_err());
        assert!(writer_config(Some(&json!({"Transformation": "SQUASH"})), true).is_err());
    }
}
