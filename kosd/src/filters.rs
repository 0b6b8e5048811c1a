//! Docker's `filters` query parameter: `{"key":{"value":true}}` (or the older
//! `{"key":["value"]}`), validated against the keys an endpoint accepts.

use std::collections::BTreeMap;

use crate::error::{ApiError, Result};

/// Parsed filters: key -> accepted values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters(pub BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the raw parameter, refusing keys outside `allowed`.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Filters> {
        let raw = match raw {
            None => return Ok(Filters::default()),
            Some(r) if r.trim().is_empty() => return Ok(Filters::default()),
            Some(r) => r,
        };
        let v: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad(format!("invalid filters {raw:?}: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad("invalid filters: expected a JSON object"))?;
        let mut out = BTreeMap::new();
        for (k, vals) in obj {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad(format!("invalid filter '{k}'")));
            }
            let list: Vec<String> = match vals {
                serde_json::Value::Object(m) => m
                    .iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(false))
                    .map(|(v, _)| v.clone())
                    .collect(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| ApiError::bad(format!("invalid filter value for '{k}'")))
                    })
                    .collect::<Result<_>>()?,
                _ => return Err(ApiError::bad(format!("invalid filter value for '{k}'"))),
            };
            out.insert(k.clone(), list);
        }
        Ok(Filters(out))
    }

    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|v| !v.is_empty())
    }

    /// No values for `key`, or `pred` holds for one of them.
    pub fn any_or_unset(&self, key: &str, mut pred: impl FnMut(&str) -> bool) -> bool {
        let v = self.get(key);
        v.is_empty() || v.iter().any(|x| pred(x))
    }

    /// Every `label` filter (`key` or `key=value`) matches `labels`.
    pub fn labels_match<'a>(
        &self,
        key: &str,
        mut lookup: impl FnMut(&str) -> Option<&'a str>,
    ) -> bool {
        self.get(key).iter().all(|f| match f.split_once('=') {
            Some((k, v)) => lookup(k) == Some(v),
            None => lookup(f).is_some(),
        })
    }

    /// Parses a boolean filter value (`dangling=true`).
    pub fn bool_value(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key).first().map(String::as_str) {
            None => Ok(None),
            Some("true") | Some("1") => Ok(Some(true)),
            Some("false") | Some("0") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad(format!(
                "invalid filter '{key}={other}': expected true or false"
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings_and_validation() {
        let f = Filters::parse(Some(r#"{"label":{"a=b":true,"c":true}}"#), &["label"]).unwrap();
        assert_eq!(f.get("label"), ["a=b".to_string(), "c".to_string()]);
        let f = Filters::parse(Some(r#"{"label":["x"]}"#), &["label"]).unwrap();
        assert_eq!(f.get("label"), ["x".to_string()]);
        let e = Filters::parse(Some(r#"{"nope":["x"]}"#), &["label"]).unwrap_err();
        assert_eq!(e.to_string(), "invalid filter 'nope'");
        assert!(Filters::parse(Some("[1]"), &[]).is_err());
        assert!(Filters::parse(Some("{"), &[]).is_err());
        assert_eq!(Filters::parse(None, &[]).unwrap(), Filters::default());
    }

    #[test]
    fn label_matching() {
        let f = Filters::parse(Some(r#"{"label":["a=b","c"]}"#), &["label"]).unwrap();
        let labels = [("a", "b"), ("c", "")];
        let look = |k: &str| labels.iter().find(|(x, _)| *x == k).map(|(_, v)| *v);
        assert!(f.labels_match("label", look));
        let labels2 = [("a", "z"), ("c", "")];
        let look2 = |k: &str| labels2.iter().find(|(x, _)| *x == k).map(|(_, v)| *v);
        assert!(!f.labels_match("label", look2));
    }
}
