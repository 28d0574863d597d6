//! `--set path=value` and `--remove path` over a resource's JSON, as in az's generic update.
//! Paths may use the YAML spelling (`public_network_access`) or the ARM one
//! (`publicNetworkAccess`); a path that is not a top-level field is looked up under
//! `properties`, so `--set publicNetworkAccess=Disabled` works as the Azure docs show.

use serde_json::Value;

const TOP_LEVEL: &[&str] = &["id", "name", "type", "location", "tags", "identity", "kind", "sku", "properties", "systemData"];

fn camel(segment: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in segment.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

enum Step {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    let mut steps = Vec::new();
    let mut in_tags = false;
    for (i, raw) in path.split('.').enumerate() {
        let (key, rest) = match raw.find('[') {
            Some(p) => (&raw[..p], &raw[p..]),
            None => (raw, ""),
        };
        if key.is_empty() && rest.is_empty() {
            return Err(format!("'{path}' has an empty segment"));
        }
        if !key.is_empty() {
            // Tag names are data, not field names: keep their spelling.
            let k = if in_tags { key.to_string() } else { camel(key) };
            if i == 0 && !TOP_LEVEL.contains(&k.as_str()) {
                steps.push(Step::Key("properties".into()));
            }
            in_tags = i == 0 && k == "tags";
            steps.push(Step::Key(k));
        }
        let mut r = rest;
        while let Some(stripped) = r.strip_prefix('[') {
            let end = stripped.find(']').ok_or_else(|| format!("'{path}': unclosed '['"))?;
            let n = stripped[..end].parse().map_err(|_| format!("'{path}': '{}' is not an index", &stripped[..end]))?;
            steps.push(Step::Index(n));
            r = &stripped[end + 1..];
        }
        if !r.is_empty() {
            return Err(format!("'{path}': unexpected '{r}'"));
        }
    }
    Ok(steps)
}

fn parse_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// Applies `path=value`; intermediate objects are created.
pub fn apply_set(doc: &mut Value, expr: &str) -> Result<(), String> {
    let (path, raw) = expr.split_once('=').ok_or_else(|| format!("--set takes path=value, not '{expr}'"))?;
    let steps = parse_path(path.trim())?;
    let mut cur = doc;
    for step in steps {
        cur = match step {
            Step::Key(k) => {
                if cur.is_null() {
                    *cur = Value::Object(Default::default());
                }
                let obj = cur.as_object_mut().ok_or_else(|| format!("'{path}': '{k}' is not inside an object"))?;
                obj.entry(k).or_insert(Value::Null)
            }
            Step::Index(n) => {
                let arr = cur.as_array_mut().ok_or_else(|| format!("'{path}': [{n}] is not inside a list"))?;
                let len = arr.len();
                arr.get_mut(n).ok_or_else(|| format!("'{path}': index {n} is out of range (the list has {len})"))?
            }
        };
    }
    *cur = parse_value(raw);
    Ok(())
}

/// Removes the field at `path` (or the list element).
pub fn apply_remove(doc: &mut Value, path: &str) -> Result<(), String> {
    let mut steps = parse_path(path.trim())?;
    let last = steps.pop().ok_or_else(|| "empty path".to_string())?;
    let mut cur = doc;
    for step in steps {
        cur = match step {
            Step::Key(k) => cur.get_mut(&k).ok_or_else(|| format!("'{path}': no field '{k}'"))?,
            Step::Index(n) => cur.get_mut(n).ok_or_else(|| format!("'{path}': no element {n}"))?,
        };
    }
    let removed = match last {
        Step::Key(k) => cur.as_object_mut().and_then(|o| o.remove(&k)).is_some(),
        Step::Index(n) => match cur.as_array_mut() {
            Some(a) if n < a.len() => {
                a.remove(n);
                true
            }
            _ => false,
        },
    };
    if removed { Ok(()) } else { Err(format!("'{path}': nothing to remove")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_resolves_properties_and_spellings() {
        let mut d = json!({"location": "eastus", "tags": {}, "properties": {"publicNetworkAccess": "Enabled", "regionDetails": [{"location": "eastus"}]}});
        apply_set(&mut d, "publicNetworkAccess=Disabled").unwrap();
        assert_eq!(d["properties"]["publicNetworkAccess"], "Disabled");
        apply_set(&mut d, "public_network_access=Enabled").unwrap();
        assert_eq!(d["properties"]["publicNetworkAccess"], "Enabled");
        apply_set(&mut d, "tags.team_name=ml").unwrap();
        assert_eq!(d["tags"]["team_name"], "ml");
        apply_set(&mut d, "properties.regionDetails[0].location=westus").unwrap();
        assert_eq!(d["properties"]["regionDetails"][0]["location"], "westus");
        apply_set(&mut d, "sku={\"name\":\"P1\"}").unwrap();
        assert_eq!(d["sku"]["name"], "P1");
        assert!(apply_set(&mut d, "properties.regionDetails[3].location=x").is_err());
        assert!(apply_set(&mut d, "noequals").is_err());
        apply_remove(&mut d, "tags.team_name").unwrap();
        assert!(d["tags"].get("team_name").is_none());
        assert!(apply_remove(&mut d, "tags.absent").is_err());
    }
}
