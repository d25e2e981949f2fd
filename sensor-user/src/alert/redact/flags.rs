//! Credentials passed as a flag's value: `--password X`, `--token X`, `curl -u user:pass`,
//! `mysql -pX`, `sshpass -p X`, `redis-cli -a X`. The command line is read as words, across
//! arguments and inside scripts (`sh -c 'mysql -pX db'`), since a flag and its value may be in
//! two arguments or in one. (`--password=X` is a [`super::shapes`] assignment.)

use std::ops::Range;

use super::names;

/// Short flags whose value is a password, for the programs that read them so: elsewhere `-p` is
/// a port (`ssh`), a parent directory (`mkdir`) or "preserve" (`cp`). `mysql -p X` reads X as
/// the database, but whoever types it may mean the password: masking a database name costs little.
const PASSWORD_FLAGS: [(&str, &str); 12] = [
    ("mysql", "-p"),
    ("mysqldump", "-p"),
    ("mysqladmin", "-p"),
    ("mysqlimport", "-p"),
    ("mariadb", "-p"),
    ("mariadb-dump", "-p"),
    ("sshpass", "-p"),
    ("mongo", "-p"),
    ("mongosh", "-p"),
    ("mongodump", "-p"),
    ("mongorestore", "-p"),
    ("redis-cli", "-a"),
];
/// curl's flags whose value is `user:password`; the user stays.
const CURL_USER_FLAGS: [&str; 4] = ["-u", "--user", "-U", "--proxy-user"];
/// Words that end one command and start the next in a script.
const SEPARATORS: [&str; 6] = ["|", "||", "&&", ";", "&", "|&"];

/// One word of a command line: in which argument, which bytes (without surrounding quotes).
#[derive(Debug)]
struct Word {
    arg: usize,
    range: Range<usize>,
    /// Whether it begins a command: the first argument, or a script's first word.
    starts_command: bool,
}

/// For each argument, the byte ranges of the flag values in it.
pub fn spans(args: &[String]) -> Vec<Vec<Range<usize>>> {
    let mut spans = vec![Vec::new(); args.len()];
    let words = words(args);
    let text = |word: &Word| &args[word.arg][word.range.clone()];
    // The words of the command so far, as program names: a wrapper (`sudo`, `docker exec c`)
    // puts the program after its own words.
    let mut programs: Vec<&str> = Vec::new();
    for (index, word) in words.iter().enumerate() {
        let flag = text(word);
        if word.starts_command || SEPARATORS.contains(&flag) {
            programs.clear();
        }
        programs.push(program_name(flag));
        let next = words.get(index + 1).filter(|next| !text(next).starts_with("--"));
        let short = PASSWORD_FLAGS
            .iter()
            .find(|(program, short)| programs.contains(program) && flag.starts_with(short));
        let value = if programs.contains(&"curl") && curl_value_start(flag).is_some() {
            curl_password(args, word, next)
        } else if let Some((_, short)) = short {
            if flag.len() > short.len() {
                Some((word.arg, word.range.start + short.len()..word.range.end))
            } else {
                next.filter(|next| !text(next).starts_with('-')).map(|next| (next.arg, next.range.clone()))
            }
        } else if is_credential_flag(flag) {
            next.map(|next| (next.arg, next.range.clone()))
        } else {
            None
        };
        if let Some((arg, range)) = value {
            spans[arg].push(range);
        }
    }
    spans
}

/// Where the value of a curl user flag (`-u`, `--user=…`, `-uuser:pass`, the proxy's) starts in
/// its own word: its length if the value is the next word.
fn curl_value_start(flag: &str) -> Option<usize> {
    CURL_USER_FLAGS.iter().find_map(|name| {
        let rest = flag.strip_prefix(name)?;
        match rest.strip_prefix('=') {
            Some(_) => Some(name.len() + 1),
            None if rest.is_empty() || name.len() == 2 => Some(name.len()),
            None => None,
        }
    })
}

/// The password part of curl's `-u user:pass`, `-uuser:pass`, `--user=user:pass`: the user stays.
fn curl_password(args: &[String], flag: &Word, next: Option<&Word>) -> Option<(usize, Range<usize>)> {
    let start = curl_value_start(&args[flag.arg][flag.range.clone()])?;
    let (word, start) = if flag.range.start + start == flag.range.end { (next?, 0) } else { (flag, start) };
    let value = &args[word.arg][word.range.start + start..word.range.end];
    let colon = value.find(':')?;
    Some((word.arg, word.range.start + start + colon + 1..word.range.end))
}

/// `--password`, `--api-key`, `-password` (but not `-p`: see [`PASSWORD_FLAGS`]).
fn is_credential_flag(word: &str) -> bool {
    let name = word.trim_start_matches('-');
    word.starts_with('-') && name.len() > 1 && !name.contains('=') && names::is_credential(name)
}

/// The program a word names (`/usr/bin/mysql` → `mysql`), ignoring `$(` and quotes before it.
fn program_name(word: &str) -> &str {
    let word = word.trim_start_matches(['$', '(', '`', '"', '\'']);
    word.rsplit('/').next().unwrap_or(word)
}

/// The words of `args`: an argument without white space is one word; one with white space is a
/// script, split at white space, with the quotes around each word left out.
fn words(args: &[String]) -> Vec<Word> {
    let mut words = Vec::new();
    for (arg, text) in args.iter().enumerate() {
        if !text.contains(char::is_whitespace) {
            words.push(Word { arg, range: 0..text.len(), starts_command: arg == 0 });
            continue;
        }
        let mut first = true;
        for piece in pieces(text) {
            let piece_text = &text[piece.clone()];
            let start = piece.end - piece_text.trim_start_matches(['"', '\'']).len();
            let end = piece.start + piece_text.trim_end_matches(['"', '\'', ';']).len();
            if start < end {
                words.push(Word { arg, range: start..end, starts_command: first });
                first = false;
            }
        }
    }
    words
}

/// The byte ranges of `text` between white space (of any width: U+00A0 is two bytes).
fn pieces(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = None;
    text.char_indices().chain(std::iter::once((text.len(), ' '))).filter_map(move |(at, c)| {
        match (c.is_whitespace(), start) {
            (true, Some(from)) => {
                start = None;
                Some(from..at)
            }
            (false, None) => {
                start = Some(at);
                None
            }
            _ => None,
        }
    })
}
