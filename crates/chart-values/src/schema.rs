//! values.schema.json from values.yaml: every map strict, leaf types from their defaults, refined by
//! `## @schema` fragments (merged over the inferred schema, the fragment's keys winning).

use serde_json::{json, Map, Value};

use crate::doc::ValuesDoc;

impl ValuesDoc {
    /// The JSON schema Helm validates values against (draft-07).
    pub fn json_schema(&self) -> Value {
        let mut root = self.schema_for("", &self.defaults);
        if let Some(obj) = root.as_object_mut() {
            let mut ordered = Map::new();
            ordered.insert("$schema".into(), json!("http://json-schema.org/draft-07/schema#"));
            ordered.insert("title".into(), json!("Values of the citus chart (generated from values.yaml)"));
            ordered.append(obj);
            return Value::Object(ordered);
        }
        root
    }

    fn schema_for(&self, key: &str, value: &Value) -> Value {
        let param = self.param(key);
        let mut schema = match value {
            Value::Object(map) if param.is_none() && !map.is_empty() => {
                let properties: Map<String, Value> = map
                    .iter()
                    .map(|(child, v)| {
                        let path = if key.is_empty() { child.clone() } else { format!("{key}.{child}") };
                        (child.clone(), self.schema_for(&path, v))
                    })
                    .collect();
                json!({"type": "object", "additionalProperties": false, "properties": properties})
            }
            other => json!({"type": inferred_type(other)}),
        };
        if let Some(p) = param {
            schema["description"] = json!(p.description);
        }
        if let (Some(fragment), Some(obj)) = (self.schemas.get(key), schema.as_object_mut()) {
            if let Some(fragment) = fragment.as_object() {
                for (k, v) in fragment {
                    obj.insert(k.clone(), v.clone());
                }
            }
        }
        schema
    }
}

fn inferred_type(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

#[cfg(test)]
mod tests {
    use crate::ValuesDoc;
    use serde_json::json;

    const VALUES: &str = "\
## @schema svc {\"additionalProperties\": true}
svc:
  ## @param svc.type Type
  ## @schema svc.type {\"enum\": [\"ClusterIP\", \"NodePort\"]}
  type: ClusterIP
  ## @param svc.port Port
  port: 5432
## @param labels Labels
labels: {}
";

    #[test]
    fn maps_are_strict_leaves_typed_fragments_merged() {
        let schema = ValuesDoc::parse(VALUES).expect("doc").json_schema();
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(schema["properties"]["svc"]["additionalProperties"], json!(true));
        assert_eq!(schema["properties"]["svc"]["properties"]["type"]["type"], json!("string"));
        assert_eq!(schema["properties"]["svc"]["properties"]["type"]["enum"], json!(["ClusterIP", "NodePort"]));
        assert_eq!(schema["properties"]["svc"]["properties"]["port"]["type"], json!("integer"));
        assert_eq!(schema["properties"]["labels"], json!({"type": "object", "description": "Labels"}));
    }
}
