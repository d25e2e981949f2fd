//! Secrets in Synapse's YAML: `homeserver.yaml`, its `conf.d` files and app-service
//! registrations. Keys are matched wherever they sit (`database.args.password`,
//! `oidc_providers[0].client_secret`), as Synapse's config modules name them
//! (`synapse/config/*.py`). The parsed document's strings are zeroed before it is dropped (the
//! parser's own buffers are beyond reach).

use serde_norway::Value;
use zeroize::Zeroize;

use super::{found, key_files, FoundValue, NoValues, Sharing};

/// Keys whose string value is a secret, and whom it is for. The homeserver keeps its own
/// secrets (`macaroon_secret_key`, ...) and presents its peers' credentials to them: the
/// database and SMTP passwords, the OIDC client secret, the reCAPTCHA key (to Google's
/// verification), the MAS shared secret, the app-service tokens it exchanges, Sentry's DSN, an
/// S3 media store's key. `password_config.pepper` is matched as `pepper`.
const SECRET_KEYS: &[(&str, Sharing)] = &[
    ("registration_shared_secret", Sharing::Kept),
    ("macaroon_secret_key", Sharing::Kept),
    ("form_secret", Sharing::Kept),
    ("worker_replication_secret", Sharing::Kept),
    ("turn_shared_secret", Sharing::Kept),
    ("admin_token", Sharing::Kept),
    ("pepper", Sharing::Kept),
    ("password", Sharing::HandedOut),
    ("smtp_pass", Sharing::HandedOut),
    ("turn_password", Sharing::HandedOut),
    ("client_secret", Sharing::HandedOut),
    ("recaptcha_private_key", Sharing::HandedOut),
    ("secret", Sharing::HandedOut),
    ("as_token", Sharing::HandedOut),
    ("hs_token", Sharing::HandedOut),
    ("dsn", Sharing::HandedOut),
    ("secret_access_key", Sharing::HandedOut),
];
/// Keys holding a key in text: Synapse's inline `signing_key` (`ed25519 a_x SEED` lines) and
/// an OIDC `client_secret_jwt_key.key` (PEM).
const KEY_TEXT_KEYS: &[&str] = &["signing_key", "key"];

/// The secrets of the YAML document `text` (of the file shown as `path`).
pub fn values(text: &str, path: &str) -> Result<Vec<FoundValue>, NoValues> {
    let mut document: Value = serde_norway::from_str(text).map_err(|_| NoValues::BadYaml)?;
    let mut values = Vec::new();
    walk(&document, "", path, &mut values);
    scrub(&mut document);
    Ok(values)
}

/// Zeroes every string of `value` before it is freed: the parsed document holds the secrets.
fn scrub(value: &mut Value) {
    match value {
        Value::String(text) => text.zeroize(),
        Value::Mapping(mapping) => mapping.values_mut().for_each(scrub),
        Value::Sequence(items) => items.iter_mut().for_each(scrub),
        Value::Tagged(tagged) => scrub(&mut tagged.value),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn walk(value: &Value, at: &str, path: &str, values: &mut Vec<FoundValue>) {
    match value {
        Value::Mapping(mapping) => {
            for (key, value) in mapping {
                let Some(key) = key.as_str() else { continue };
                let dotted = if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
                match value.as_str() {
                    Some(text) => leaf(key, &dotted, text, path, values),
                    None => walk(value, &dotted, path, values),
                }
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                walk(item, &format!("{at}[{index}]"), path, values);
            }
        }
        _ => {}
    }
}

fn leaf(key: &str, dotted: &str, text: &str, path: &str, values: &mut Vec<FoundValue>) {
    let name = format!("{dotted} of {path}");
    if let Some(&(_, sharing)) = SECRET_KEYS.iter().find(|(k, _)| *k == key) {
        values.push(found(name, text, sharing));
    } else if KEY_TEXT_KEYS.contains(&key) {
        values.extend(key_files::values(text, &name).into_iter().flatten());
    }
}
