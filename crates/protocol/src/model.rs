//! AWS service models (botocore's `service-2.json`, documentation stripped) loaded for
//! runtime interpretation.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde::Deserialize;

/// Where an input or output member travels in a REST protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Location {
    Uri,
    Querystring,
    Header,
    Headers,
    StatusCode,
}

/// A reference to a shape from a member, a list member, a map key or value, or an operation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShapeRef {
    pub shape: String,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub location_name: Option<String>,
    #[serde(default)]
    pub flattened: bool,
    #[serde(default)]
    pub xml_attribute: bool,
    #[serde(default)]
    pub xml_namespace: Option<XmlNamespace>,
    #[serde(default)]
    pub result_wrapper: Option<String>,
    #[serde(default)]
    pub timestamp_format: Option<String>,
    #[serde(default)]
    pub jsonvalue: bool,
    #[serde(default)]
    pub idempotency_token: bool,
    #[serde(default)]
    pub host_label: bool,
    #[serde(default)]
    pub event_payload: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum XmlNamespace {
    Uri(String),
    Full {
        #[serde(default)]
        prefix: Option<String>,
        uri: String,
    },
}

impl XmlNamespace {
    pub fn uri(&self) -> &str {
        match self {
            XmlNamespace::Uri(u) => u,
            XmlNamespace::Full { uri, .. } => uri,
        }
    }
    pub fn prefix(&self) -> Option<&str> {
        match self {
            XmlNamespace::Uri(_) => None,
            XmlNamespace::Full { prefix, .. } => prefix.as_deref(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorTrait {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub http_status_code: Option<u16>,
    #[serde(default)]
    pub sender_fault: bool,
}

/// One shape of the model. Numeric bounds are kept as f64 since models write them either way.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shape {
    #[serde(rename = "type")]
    pub kind: ShapeKind,
    #[serde(default)]
    pub members: IndexMap<String, ShapeRef>,
    #[serde(default)]
    pub required: Vec<String>,
    #[serde(default)]
    pub member: Option<Box<ShapeRef>>,
    #[serde(default)]
    pub key: Option<Box<ShapeRef>>,
    #[serde(default)]
    pub value: Option<Box<ShapeRef>>,
    #[serde(default, rename = "enum")]
    pub enum_values: Option<Vec<String>>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub flattened: bool,
    #[serde(default)]
    pub location_name: Option<String>,
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub exception: bool,
    #[serde(default)]
    pub error: Option<ErrorTrait>,
    #[serde(default)]
    pub timestamp_format: Option<String>,
    #[serde(default)]
    pub streaming: bool,
    #[serde(default)]
    pub union: bool,
    #[serde(default)]
    pub xml_namespace: Option<XmlNamespace>,
    #[serde(default)]
    pub document: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShapeKind {
    Structure,
    List,
    Map,
    String,
    Integer,
    Long,
    Float,
    Double,
    Boolean,
    Blob,
    Timestamp,
    Byte,
    Short,
    Character,
    Bigdecimal,
    Biginteger,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpBinding {
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_uri")]
    pub request_uri: String,
    #[serde(default)]
    pub response_code: Option<u16>,
}

fn default_method() -> String {
    "POST".into()
}
fn default_uri() -> String {
    "/".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub name: String,
    #[serde(default)]
    pub http: HttpBinding,
    #[serde(default)]
    pub input: Option<ShapeRef>,
    #[serde(default)]
    pub output: Option<ShapeRef>,
    #[serde(default)]
    pub errors: Vec<ShapeRef>,
    /// A deprecated operation loses a routing tie to its successor (S3's GetBucketLifecycle
    /// shares its method and URI with GetBucketLifecycleConfiguration).
    #[serde(default)]
    pub deprecated: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub endpoint_prefix: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub protocols: Vec<String>,
    #[serde(default)]
    pub json_version: Option<String>,
    #[serde(default)]
    pub target_prefix: Option<String>,
    #[serde(default)]
    pub signing_name: Option<String>,
    #[serde(default)]
    pub service_id: String,
    #[serde(default)]
    pub xml_namespace: Option<String>,
    #[serde(default)]
    pub aws_query_compatible: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RawModel {
    metadata: Metadata,
    operations: IndexMap<String, Operation>,
    shapes: HashMap<String, Shape>,
}

/// A loaded service model.
#[derive(Debug)]
pub struct Model {
    /// The service key tsumiki serves it under (`sqs`), also the model file's stem.
    pub name: String,
    pub metadata: Metadata,
    pub operations: IndexMap<String, Operation>,
    pub shapes: HashMap<String, Shape>,
    /// Error shapes by the code a client may see (shape name and awsQuery code).
    errors_by_code: HashMap<String, String>,
}

#[derive(Debug)]
pub struct ModelError(pub String);

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModelError {}

impl Model {
    pub fn from_json(name: &str, json: &str) -> Result<Model, ModelError> {
        let raw: RawModel =
            serde_json::from_str(json).map_err(|e| ModelError(format!("model {name}: {e}")))?;
        let mut errors_by_code = HashMap::new();
        for (shape_name, shape) in &raw.shapes {
            if shape.exception {
                errors_by_code.insert(shape_name.clone(), shape_name.clone());
                if let Some(code) = shape.error.as_ref().and_then(|e| e.code.clone()) {
                    errors_by_code.insert(code, shape_name.clone());
                }
            }
        }
        let model = Model {
            name: name.to_string(),
            metadata: raw.metadata,
            operations: raw.operations,
            shapes: raw.shapes,
            errors_by_code,
        };
        model.check()?;
        Ok(model)
    }

    /// Every shape reference resolves; caught at load so codecs may index shapes freely.
    fn check(&self) -> Result<(), ModelError> {
        let missing = |r: &ShapeRef| {
            if self.shapes.contains_key(&r.shape) {
                Ok(())
            } else {
                Err(ModelError(format!(
                    "model {}: unknown shape {}",
                    self.name, r.shape
                )))
            }
        };
        for op in self.operations.values() {
            for r in op
                .input
                .iter()
                .chain(op.output.iter())
                .chain(op.errors.iter())
            {
                missing(r)?;
            }
        }
        for shape in self.shapes.values() {
            for r in shape.members.values() {
                missing(r)?;
            }
            for r in [&shape.member, &shape.key, &shape.value]
                .into_iter()
                .flatten()
            {
                missing(r)?;
            }
        }
        Ok(())
    }

    pub fn shape(&self, name: &str) -> &Shape {
        // `check` proved every reference resolves; a bare name from a caller that does not
        // resolve is a bug in that caller.
        &self.shapes[name]
    }

    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.get(name)
    }

    /// The signing name SigV4 scopes carry for this service.
    pub fn signing_name(&self) -> &str {
        self.metadata
            .signing_name
            .as_deref()
            .unwrap_or(&self.metadata.endpoint_prefix)
    }

    /// The protocols this service answers, the preferred first.
    pub fn protocols(&self) -> Vec<&str> {
        if self.metadata.protocols.is_empty() {
            vec![self.metadata.protocol.as_str()]
        } else {
            self.metadata.protocols.iter().map(String::as_str).collect()
        }
    }

    pub fn is_query_compatible(&self) -> bool {
        self.metadata.aws_query_compatible.is_some()
    }

    /// The error shape behind `code`, if the model declares one.
    pub fn error_shape(&self, code: &str) -> Option<(&str, &Shape)> {
        let name = self.errors_by_code.get(code)?;
        Some((name.as_str(), self.shape(name)))
    }

    /// An [`AwsError`](tsumiki_core::AwsError) for the model's error shape `shape_name`, with its
    /// status, fault and awsQuery code from the model.
    pub fn error(&self, shape_name: &str, message: impl Into<String>) -> tsumiki_core::AwsError {
        let mut err = tsumiki_core::AwsError::new(shape_name.to_string(), 400, message);
        if let Some(shape) = self.shapes.get(shape_name)
            && let Some(trait_) = &shape.error
        {
            if let Some(status) = trait_.http_status_code {
                err.status = status;
            }
            if let Some(code) = &trait_.code
                && code != shape_name
            {
                err.query_code = Some(code.clone().into());
            }
            err.fault = if trait_.sender_fault || err.status < 500 {
                tsumiki_core::Fault::Sender
            } else {
                tsumiki_core::Fault::Receiver
            };
        }
        err
    }
}
