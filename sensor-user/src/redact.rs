//! Command lines are evidence, but an attacker may put a stolen token in one (`curl -H
//! "Authorization: Bearer syt_…"`): credential-shaped text in arguments is masked before any
//! output, so Vigie never prints a secret's value even when a process line carries it.

/// Prefixes of Matrix access, refresh and admin tokens.
const TOKEN_PREFIXES: [&str; 3] = ["syt_", "syr_", "mat_"];
/// Words after which the rest of an argument is a credential.
const CREDENTIAL_KEYS: [&str; 6] = ["bearer ", "token=", "password=", "secret=", "passwd=", "access_token="];
/// What replaces masked text.
const MASK: &str = "[redacted]";

/// `args` with credential-shaped text masked.
pub fn args(args: &[String]) -> Vec<String> {
    args.iter().map(|arg| arg_text(arg)).collect()
}

fn arg_text(arg: &str) -> String {
    let mut text = arg.to_owned();
    let lower = arg.to_ascii_lowercase();
    if let Some(at) = CREDENTIAL_KEYS.iter().filter_map(|key| lower.find(key).map(|i| i + key.len())).min() {
        text.replace_range(at.., MASK);
    }
    for prefix in TOKEN_PREFIXES {
        while let Some(start) = text.find(prefix) {
            let end = text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |len| start + len);
            text.replace_range(start..end, MASK);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(arg: &str) -> String {
        args(&[arg.to_owned()]).remove(0)
    }

    #[test]
    fn tokens_and_credential_values_are_masked() {
        assert_eq!(one("Authorization: Bearer syt_YWRtaW4_abcDEF_123"), "Authorization: Bearer [redacted]");
        assert_eq!(
            one("https://hs/_matrix?access_token=syt_x_y_z&a=1"),
            "https://hs/_matrix?access_token=[redacted]"
        );
        assert_eq!(one("--data=syt_abc_def&x=1"), "--data=[redacted]&x=1");
        assert_eq!(one("PASSWORD=hunter2"), "PASSWORD=[redacted]");
    }

    #[test]
    fn ordinary_arguments_are_kept() {
        for arg in ["curl", "--data-binary", "@/etc/shadow", "http://10.213.0.2:8080/", "-c", "print(1)"] {
            assert_eq!(one(arg), arg);
        }
    }
}
