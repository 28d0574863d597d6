//! Validated names. Raw strings become these at the boundary; the domain never re-checks them.

use std::collections::BTreeMap;
use std::fmt;

/// A field that failed validation, with a message that tells the user how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidField {
    /// JSON path of the offending field, e.g. `properties.publicNetworkAccess`.
    pub target: String,
    /// The ARM error code, e.g. `InvalidResourceName`.
    pub code: &'static str,
    pub message: String,
}

impl InvalidField {
    pub fn new(code: &'static str, target: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidField { target: target.into(), code, message: message.into() }
    }
}

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// A registry name: 2–32 characters, letters, digits, `-` and `_`, starting with a letter or
    /// digit. Unique case-insensitively across the whole installation (discovery looks a registry
    /// up by name alone).
    RegistryName
);
string_newtype!(
    /// A resource group name: 1–90 characters of letters, digits, `-`, `_`, `.`, `(`, `)`,
    /// not ending with `.`.
    ResourceGroupName
);
string_newtype!(
    /// A region, normalised as ARM does: `East US` → `eastus`.
    Region
);

impl RegistryName {
    pub fn parse(s: &str) -> Result<Self, InvalidField> {
        let ok_len = (2..=32).contains(&s.len());
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok_len && first_ok && rest_ok {
            Ok(RegistryName(s.to_string()))
        } else {
            Err(InvalidField::new(
                "InvalidResourceName",
                "name",
                format!("The registry name '{s}' is invalid: use 2 to 32 letters, digits, '-' or '_', starting with a letter or digit."),
            ))
        }
    }
    /// The key under which uniqueness is enforced.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl ResourceGroupName {
    pub fn parse(s: &str) -> Result<Self, InvalidField> {
        let ok = (1..=90).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c)) && !s.ends_with('.');
        if ok {
            Ok(ResourceGroupName(s.to_string()))
        } else {
            Err(InvalidField::new(
                "InvalidResourceGroupName",
                "resourceGroupName",
                format!(
                    "The resource group name '{s}' is invalid: use 1 to 90 letters, digits, '-', '_', '.', '(' or ')', not ending with '.'."
                ),
            ))
        }
    }
}

impl Region {
    pub fn parse(target: &str, s: &str) -> Result<Self, InvalidField> {
        let norm: String = s.chars().filter(|c| *c != ' ').collect::<String>().to_ascii_lowercase();
        let ok = (1..=40).contains(&norm.len())
            && norm.starts_with(|c: char| c.is_ascii_lowercase())
            && norm.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if ok {
            Ok(Region(norm))
        } else {
            Err(InvalidField::new(
                "LocationNotAvailableForResourceType",
                target,
                format!("'{s}' is not a valid location: use a region name such as 'eastus' (letters and digits)."),
            ))
        }
    }
}

/// `Enabled` or `Disabled`, accepted case-insensitively as ARM and the YAML do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PublicNetworkAccess {
    Enabled,
    Disabled,
}

impl PublicNetworkAccess {
    pub fn parse(target: &str, s: &str) -> Result<Self, InvalidField> {
        if s.eq_ignore_ascii_case("enabled") {
            Ok(Self::Enabled)
        } else if s.eq_ignore_ascii_case("disabled") {
            Ok(Self::Disabled)
        } else {
            Err(InvalidField::new(
                "InvalidRequestContent",
                target,
                format!("publicNetworkAccess must be 'Enabled' or 'Disabled', not '{s}'."),
            ))
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
        }
    }
}

/// ARM tag limits: at most 50 tags; names 1–512 characters without `<>%&\?/`; values up to 256.
pub fn validate_tags(target: &str, tags: &BTreeMap<String, String>) -> Result<(), InvalidField> {
    if tags.len() > 50 {
        return Err(InvalidField::new("InvalidTagCount", target, format!("{} tags given; a resource can have at most 50.", tags.len())));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 512 || k.chars().any(|c| "<>%&\\?/".contains(c) || c.is_control()) {
            return Err(InvalidField::new(
                "InvalidTagNameCharacters",
                format!("{target}.{k}"),
                format!("The tag name '{k}' is invalid: use 1 to 512 characters, none of < > % & \\ ? /."),
            ));
        }
        if v.len() > 256 {
            return Err(InvalidField::new(
                "InvalidTagValueLength",
                format!("{target}.{k}"),
                format!("The value of tag '{k}' is {} characters long; the limit is 256.", v.len()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names() {
        for good in ["ab", "a-b_c", "Reg1", &"a".repeat(32)] {
            assert!(RegistryName::parse(good).is_ok(), "{good}");
        }
        for bad in ["a", "-ab", "_ab", "a b", "ä1", &"a".repeat(33), ""] {
            let e = RegistryName::parse(bad).unwrap_err();
            assert_eq!(e.code, "InvalidResourceName");
        }
        assert_eq!(RegistryName::parse("MyReg").unwrap().key(), "myreg");
    }

    #[test]
    fn group_names() {
        assert!(ResourceGroupName::parse("rg-1.(x)_y").is_ok());
        assert!(ResourceGroupName::parse("rg.").is_err());
        assert!(ResourceGroupName::parse("").is_err());
        assert!(ResourceGroupName::parse("a/b").is_err());
    }

    #[test]
    fn regions_normalise() {
        assert_eq!(Region::parse("location", "East US 2").unwrap().as_str(), "eastus2");
        assert!(Region::parse("location", "2east").is_err());
        assert!(Region::parse("location", "east-us").is_err());
    }

    #[test]
    fn tags() {
        let mut t = BTreeMap::new();
        t.insert("ok".to_string(), "v".to_string());
        assert!(validate_tags("tags", &t).is_ok());
        t.insert("a/b".to_string(), "v".to_string());
        assert_eq!(validate_tags("tags", &t).unwrap_err().target, "tags.a/b");
    }
}
