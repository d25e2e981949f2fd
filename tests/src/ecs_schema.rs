//! Checks the agent's documents against the published ECS field definitions (`@elastic/ecs`,
//! fetched by `cargo xtask bootstrap`) and against `docs/FIELDS.md`, the table of every field
//! the agent emits, so that neither the output nor its documentation can drift.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

/// The ECS version the documents are checked against.
pub const ECS_VERSION: &str = "9.4.0";

/// ECS fields whose values must be among the values ECS allows.
const CATEGORISATION: [&str; 4] = ["event.kind", "event.category", "event.type", "event.outcome"];

/// The header of the field table in `docs/FIELDS.md`, without spaces.
const TABLE_HEADER: &str = "|Field|Type|Documents|Meaning|";

/// The `documents` cell of a field every document carries.
const ALL_DOCUMENTS: &str = "all";

/// A field's declared type: an Elasticsearch type name, and whether it holds an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldType {
    pub name: String,
    pub array: bool,
}

impl FieldType {
    /// `keyword` or `keyword[]`.
    fn parse(text: &str) -> Self {
        match text.strip_suffix("[]") {
            Some(name) => Self { name: name.to_owned(), array: true },
            None => Self { name: text.to_owned(), array: false },
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, if self.array { "[]" } else { "" })
    }
}

/// One ECS field: its type, and its allowed values where ECS lists them.
#[derive(Debug)]
struct EcsField {
    field_type: FieldType,
    allowed: Option<BTreeSet<String>>,
}

/// The ECS definitions: every field by flat name, and the event types each category expects.
#[derive(Debug)]
pub struct Definitions {
    pub version: String,
    fields: BTreeMap<String, EcsField>,
    expected_types: BTreeMap<String, BTreeSet<String>>,
}

impl Definitions {
    /// Reads `<target>/ecs/<ECS_VERSION>/ecs_flat.json`, written by `cargo xtask bootstrap`.
    ///
    /// # Errors
    /// When the file is missing (bootstrap not run) or not the definitions.
    pub fn load() -> Result<Self> {
        let path = target_dir().join("ecs").join(ECS_VERSION).join("ecs_flat.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read {} (run `cargo xtask bootstrap`)", path.display()))?;
        let json: Value = serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        Self::from_json(&json).with_context(|| format!("read the definitions in {}", path.display()))
    }

    /// From `{"version": …, "fields": EcsFlat}`.
    ///
    /// # Errors
    /// When a field has no type.
    pub fn from_json(json: &Value) -> Result<Self> {
        let version = json["version"].as_str().context("no version")?.to_owned();
        let flat = json["fields"].as_object().context("no fields")?;
        let mut fields = BTreeMap::new();
        let mut expected_types = BTreeMap::new();
        for (name, field) in flat {
            let type_name = field["type"].as_str().with_context(|| format!("{name} has no type"))?;
            let array = field["normalize"].as_array().is_some_and(|n| n.iter().any(|v| v == "array"));
            let allowed_values = field["allowed_values"].as_array();
            let allowed = allowed_values.map(|values| names(values.iter().map(|v| &v["name"])));
            if name == "event.category" {
                for value in allowed_values.into_iter().flatten() {
                    let category = value["name"].as_str().unwrap_or_default().to_owned();
                    let types = value["expected_event_types"].as_array().map(|t| names(t.iter()));
                    expected_types.insert(category, types.unwrap_or_default());
                }
            }
            let field_type = FieldType { name: type_name.to_owned(), array };
            fields.insert(name.clone(), EcsField { field_type, allowed });
        }
        Ok(Self { version, fields, expected_types })
    }
}

fn names<'a>(values: impl Iterator<Item = &'a Value>) -> BTreeSet<String> {
    values.filter_map(Value::as_str).map(str::to_owned).collect()
}

/// The target directory: `$CARGO_TARGET_DIR` (as `cargo xtask test` sets it), else the
/// workspace's `target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from)
}

/// One row of `docs/FIELDS.md`.
#[derive(Debug)]
struct Row {
    field_type: FieldType,
    /// `event.action`s of the documents that may carry the field; `None` for all.
    documents: Option<BTreeSet<String>>,
}

/// The field table of `docs/FIELDS.md`: rows `` | `name` | type | documents | meaning | ``.
#[derive(Debug)]
pub struct FieldsTable {
    rows: BTreeMap<String, Row>,
}

impl FieldsTable {
    /// Reads the workspace's `docs/FIELDS.md`.
    ///
    /// # Errors
    /// When it cannot be read or a row is malformed.
    pub fn load() -> Result<Self> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/FIELDS.md");
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parse {}", path.display()))
    }

    /// The rows of the table headed `| Field | Type | Documents | Meaning |`.
    ///
    /// # Errors
    /// No such table, a row without four cells, or a field listed twice, naming its line.
    pub fn parse(text: &str) -> Result<Self> {
        let mut rows = BTreeMap::new();
        let mut lines = (1..).zip(text.lines());
        lines.find(|(_, line)| line.replace(' ', "") == TABLE_HEADER).context("no field table")?;
        for (number, line) in lines.skip(1).take_while(|(_, line)| line.starts_with('|')) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let ["", name, field_type, documents, _meaning, ""] = cells[..] else {
                bail!("line {number}: a field row has four cells: {line}");
            };
            let name = name.trim_matches('`');
            let field_type = FieldType::parse(field_type.trim_matches('`'));
            let documents = (documents != ALL_DOCUMENTS)
                .then(|| documents.split(',').map(|d| d.trim().trim_matches('`').to_owned()).collect());
            let row = Row { field_type, documents };
            ensure!(rows.insert(name.to_owned(), row).is_none(), "line {number}: {name} is listed twice");
        }
        ensure!(!rows.is_empty(), "no field rows");
        Ok(Self { rows })
    }

    /// Every field listed.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.rows.keys().map(String::as_str)
    }
}

/// A field of one document: its flat name and value(s).
struct Leaf<'a> {
    name: String,
    values: Vec<&'a Value>,
    array: bool,
}

/// The JSON shape of a field, for "one type per field across all documents".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    kind: Option<&'static str>,
    array: bool,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind.unwrap_or("empty"), if self.array { "[]" } else { "" })
    }
}

/// Every problem with `documents`, one line each, naming the document and the field; empty
/// when all of them conform.
#[must_use]
pub fn check(documents: &[Value], ecs: &Definitions, table: &FieldsTable) -> Vec<String> {
    let mut problems = Vec::new();
    let mut shapes: BTreeMap<String, (Shape, String)> = BTreeMap::new();
    for document in documents {
        let action = document.pointer("/event/action").and_then(Value::as_str).unwrap_or("?");
        let id = document.pointer("/event/id").and_then(Value::as_str).unwrap_or("?");
        let mut problem =
            |field: &str, what: String| problems.push(format!("{action} {id}: {field}: {what}"));
        let mut leaves = Vec::new();
        flatten(document, "", &mut leaves);
        for leaf in &leaves {
            let shape = shape_of(leaf);
            match shapes.get(&leaf.name) {
                Some((seen, first)) if !compatible_shapes(*seen, shape) => {
                    problem(&leaf.name, format!("{shape} here, {seen} in {first}"));
                }
                Some(_) => {}
                None => drop(shapes.insert(leaf.name.clone(), (shape, action.to_owned()))),
            }
            let Some(row) = table.rows.get(&leaf.name) else {
                problem(&leaf.name, "not in docs/FIELDS.md".into());
                continue;
            };
            if row.documents.as_ref().is_some_and(|documents| !documents.contains(action)) {
                problem(&leaf.name, "docs/FIELDS.md does not list this document kind for it".into());
            }
            if !leaf.name.starts_with("vigie.") {
                match ecs.fields.get(&leaf.name) {
                    None => problem(&leaf.name, format!("not an ECS {} field", ecs.version)),
                    Some(field) if field.field_type != row.field_type => problem(
                        &leaf.name,
                        format!("docs/FIELDS.md says {}, ECS says {}", row.field_type, field.field_type),
                    ),
                    Some(field) => {
                        if let Some(what) = allowed(&leaf.name, leaf, field) {
                            problem(&leaf.name, what);
                        }
                    }
                }
            }
            if let Some(what) = conforms(leaf, &row.field_type) {
                problem(&leaf.name, what);
            }
        }
        if let Some(what) = expected_event_types(document, ecs) {
            problem("event.type", what);
        }
    }
    problems
}

/// The flat names of every field of `documents`.
#[must_use]
pub fn fields_of(documents: &[Value]) -> BTreeSet<String> {
    let mut leaves = Vec::new();
    for document in documents {
        flatten(document, "", &mut leaves);
    }
    leaves.into_iter().map(|leaf| leaf.name).collect()
}

/// Every field of `value` under `prefix`; an array of objects is a field itself, and so is
/// each field of its elements.
fn flatten<'a>(value: &'a Value, prefix: &str, out: &mut Vec<Leaf<'a>>) {
    let Some(object) = value.as_object() else { return };
    for (key, value) in object {
        let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            Value::Object(_) => flatten(value, &name, out),
            Value::Array(elements) => {
                for element in elements.iter().filter(|e| e.is_object()) {
                    flatten(element, &name, out);
                }
                out.push(Leaf { name, values: elements.iter().collect(), array: true });
            }
            _ => out.push(Leaf { name, values: vec![value], array: false }),
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shape_of(leaf: &Leaf<'_>) -> Shape {
    Shape { kind: leaf.values.first().map(|v| kind_of(v)), array: leaf.array }
}

/// An empty array fits any array.
fn compatible_shapes(a: Shape, b: Shape) -> bool {
    a.array == b.array && (a.kind.is_none() || b.kind.is_none() || a.kind == b.kind)
}

/// Why `leaf` does not fit `field_type`, if it does not.
fn conforms(leaf: &Leaf<'_>, field_type: &FieldType) -> Option<String> {
    match (leaf.array, field_type.array) {
        (true, false) => return Some(format!("an array, but {field_type} is one value")),
        (false, true) => return Some(format!("one value, but {field_type} is an array")),
        _ => {}
    }
    let kinds: BTreeSet<&str> = leaf.values.iter().map(|v| kind_of(v)).collect();
    ensure_one(&kinds).or_else(|| leaf.values.iter().find_map(|v| fits(v, &field_type.name)))
}

fn ensure_one(kinds: &BTreeSet<&str>) -> Option<String> {
    (kinds.len() > 1).then(|| format!("an array of mixed {kinds:?}"))
}

/// Why `value` is not a value of Elasticsearch type `type_name`, if it is not.
fn fits(value: &Value, type_name: &str) -> Option<String> {
    let ok = match type_name {
        "keyword" | "constant_keyword" | "wildcard" | "text" | "match_only_text" => value.is_string(),
        "long" | "integer" | "short" | "byte" | "unsigned_long" => value.is_u64() || value.is_i64(),
        "float" | "double" | "half_float" | "scaled_float" => value.is_number(),
        "boolean" => value.is_boolean(),
        "date" => value.as_str().is_some_and(|s| humantime::parse_rfc3339(s).is_ok()),
        "ip" => value.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        "object" | "nested" | "flattened" => value.is_object(),
        other => return Some(format!("type {other} is not one the check knows")),
    };
    (!ok).then(|| format!("{value} is not a {type_name}"))
}

/// For the categorisation fields, a value ECS does not allow.
fn allowed(name: &str, leaf: &Leaf<'_>, field: &EcsField) -> Option<String> {
    if !CATEGORISATION.contains(&name) {
        return None;
    }
    let allowed = field.allowed.as_ref()?;
    let values = leaf.values.iter().filter_map(|v| v.as_str());
    values.filter(|v| !allowed.contains(*v)).map(|v| format!("{v:?} is not an allowed value")).next()
}

/// An `event.type` that none of the document's categories expects.
fn expected_event_types(document: &Value, ecs: &Definitions) -> Option<String> {
    let strings = |pointer: &str| -> Vec<&str> {
        let values = document.pointer(pointer).and_then(Value::as_array);
        values.map(|v| v.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
    };
    let categories = strings("/event/category");
    let expected: BTreeSet<&str> = categories
        .iter()
        .filter_map(|c| ecs.expected_types.get(*c))
        .flat_map(|types| types.iter().map(String::as_str))
        .collect();
    let types = strings("/event/type");
    if types.is_empty() {
        return Some("missing".into());
    }
    let unexpected: Vec<&str> = types.into_iter().filter(|t| !expected.contains(t)).collect();
    (!unexpected.is_empty()).then(|| format!("{unexpected:?} not expected with categories {categories:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definitions() -> Definitions {
        Definitions::from_json(&json!({
            "version": ECS_VERSION,
            "fields": {
                "@timestamp": {"type": "date", "normalize": []},
                "event.action": {"type": "keyword", "normalize": []},
                "event.category": {"type": "keyword", "normalize": ["array"], "allowed_values": [
                    {"name": "file", "expected_event_types": ["access", "change"]},
                    {"name": "network", "expected_event_types": ["connection"]},
                ]},
                "event.type": {"type": "keyword", "normalize": ["array"], "allowed_values": [
                    {"name": "access"}, {"name": "change"}, {"name": "connection"},
                ]},
                "destination.ip": {"type": "ip", "normalize": []},
                "source.bytes": {"type": "long", "normalize": []},
            }
        }))
        .unwrap()
    }

    const TABLE: &str = "\
| Field | Type | Documents | Meaning |
|---|---|---|---|
| `@timestamp` | `date` | all | when |
| `event.action` | `keyword` | all | what |
| `event.category` | `keyword[]` | all | ECS category |
| `event.type` | `keyword[]` | all | ECS type |
| `destination.ip` | `ip` | `alert` | where |
| `source.bytes` | `long` | `alert` | how much |
| `vigie.ancestry` | `object[]` | `alert` | the chain |
| `vigie.ancestry.pid` | `long` | `alert` | a pid |
";

    fn problems(document: &Value) -> Vec<String> {
        check(std::slice::from_ref(document), &definitions(), &FieldsTable::parse(TABLE).unwrap())
    }

    fn alert() -> Value {
        json!({
            "@timestamp": "2026-12-01T11:01:43.345789Z",
            "event": {"action": "alert", "category": ["network"], "type": ["connection"]},
            "destination": {"ip": "fd00::2"},
            "source": {"bytes": 12},
            "vigie": {"ancestry": [{"pid": 1}, {"pid": 2}]},
        })
    }

    #[test]
    fn a_conforming_document_has_no_problem() {
        assert_eq!(problems(&alert()), Vec::<String>::new());
    }

    #[test]
    fn wrong_types_arrays_and_unknown_fields_are_named() {
        let mut document = alert();
        document["destination"]["ip"] = json!("10.0.0.300");
        document["source"]["bytes"] = json!("12");
        document["@timestamp"] = json!("yesterday");
        document["vigie"]["ancestry"][1]["pid"] = json!([2]);
        document["destination"]["bytes"] = json!(3);
        let found = problems(&document);
        for field in
            ["destination.ip", "source.bytes", "@timestamp", "vigie.ancestry.pid", "destination.bytes"]
        {
            assert!(found.iter().any(|p| p.contains(&format!(" {field}: "))), "{field} in {found:#?}");
        }
    }

    #[test]
    fn categorisation_values_must_be_allowed_and_expected() {
        let mut document = alert();
        document["event"]["type"] = json!(["access"]);
        assert!(problems(&document).iter().any(|p| p.contains("not expected with categories")));
        document["event"]["category"] = json!(["web"]);
        assert!(problems(&document).iter().any(|p| p.contains("\"web\" is not an allowed value")));
    }

    #[test]
    fn a_field_has_one_type_across_documents_and_only_its_documents() {
        let mut other = alert();
        other["event"]["action"] = json!("state");
        other["vigie"]["ancestry"] = json!([{"pid": "3"}]);
        let table = FieldsTable::parse(TABLE).unwrap();
        let found = check(&[alert(), other], &definitions(), &table);
        let conflict = "state ?: vigie.ancestry.pid: string here, integer in alert";
        assert!(found.iter().any(|p| p == conflict), "{found:#?}");
        assert!(found.iter().any(|p| p.contains("does not list this document kind")), "{found:#?}");
    }

    #[test]
    fn table_rows_are_checked_against_ecs_and_malformed_rows_named() {
        let table =
            FieldsTable::parse(&TABLE.replace("| `source.bytes` | `long`", "| `source.bytes` | `keyword`"));
        let found = check(&[alert()], &definitions(), &table.unwrap());
        assert!(found.iter().any(|p| p.contains("docs/FIELDS.md says keyword, ECS says long")), "{found:#?}");
        let error =
            FieldsTable::parse("| Field | Type | Documents | Meaning |\n|---|\n| `a.b` | keyword |\n");
        assert!(error.unwrap_err().to_string().starts_with("line 3:"));
    }
}
