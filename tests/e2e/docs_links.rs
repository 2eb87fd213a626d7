//! The documentation stays inside the repository: every relative link of every tracked
//! Markdown file must name a file or directory that exists within the repository root.
//!
//! Links are `[text](target)`, `![alt](target)` and reference definitions `[label]: target`;
//! a target may carry `#anchor` (only the file is checked) and a `"title"`. `http:`, `https:`,
//! `mailto:` and pure `#anchor` targets are not checked; any other target is a path, relative
//! to the file that holds it (a leading `/` is relative to the repository root, as GitHub reads
//! it). Fenced code blocks and inline code are not Markdown links and are skipped.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// One relative link found in a Markdown file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    /// 1-based line of the link.
    line: usize,
    /// The target as written (anchor and title removed, percent-escapes kept).
    target: String,
}

/// Why a link does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    /// Nothing exists at the resolved path.
    Missing,
    /// The path leaves the repository (through `..` or a symbolic link).
    OutsideRepo,
}

/// A link that fails the rule, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Broken {
    /// The Markdown file, relative to the repository root.
    file: PathBuf,
    link: Link,
    problem: Problem,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.problem {
            Problem::Missing => "no such file",
            Problem::OutsideRepo => "outside the repository",
        };
        write!(
            f,
            "{}:{}: ({}) {why}",
            self.file.display(),
            self.link.line,
            self.link.target
        )
    }
}

/// The repository root: the parent of this crate's directory (`<root>/tests`).
fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The Markdown files of the repository, relative to `root`: those git tracks, or — without
/// git, or outside a git checkout (a source tarball) — every `*.md` below `root` except in
/// `.git` and `target` directories.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let tracked = Command::new("git")
        .args(["ls-files", "-z", "--", "*.md"])
        .current_dir(root)
        .output();
    let mut files = match tracked {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|&b| b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
            // A tracked file deleted in the work tree has no links to check.
            .filter(|name| root.join(name).is_file())
            .collect(),
        _ => walk_markdown(root),
    };
    files.sort();
    files
}

/// Every `*.md` file below `root` (relative paths), skipping `.git` and `target` directories
/// and not following symbolic links to directories.
fn walk_markdown(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let path = rel.join(&name);
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if name != ".git" && name != "target" {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    found
}

/// The relative links of a Markdown text, in order.
fn relative_links(text: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if let Some(marker) = fence_marker(trimmed) {
            match fence {
                None => fence = Some(marker),
                Some((c, n)) if marker.0 == c && marker.1 >= n => fence = None,
                Some(_) => {}
            }
            continue;
        }
        if fence.is_some() {
            continue;
        }
        let line = without_code_spans(raw);
        let mut targets = inline_targets(&line);
        if let Some(t) = reference_definition(&line) {
            targets.push(t);
        }
        for t in targets {
            if let Some(target) = checked_target(&t) {
                links.push(Link {
                    line: i + 1,
                    target,
                });
            }
        }
    }
    links
}

/// The fence character and length if `line` opens or closes a fenced code block.
fn fence_marker(line: &str) -> Option<(char, usize)> {
    let c = line.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = line.chars().take_while(|&x| x == c).count();
    (n >= 3).then_some((c, n))
}

/// `line` with every inline code span (`` `...` ``, any number of backticks) blanked out.
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        // The span ends at the next run of exactly as many backticks.
        let mut j = i + run;
        let mut end = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let r = chars[j..].iter().take_while(|&&c| c == '`').count();
                if r == run {
                    end = Some(j + r);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match end {
            Some(e) => {
                out.push_str(&" ".repeat(e - i));
                i = e;
            }
            // An unmatched backtick is literal text.
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// The destinations of the inline links and images of `line`: what follows `](` up to the
/// matching `)`, `<...>` destinations unwrapped.
fn inline_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        // Only a `]` that closes a `[` opened before it on the line ends link text.
        if !rest[..at].contains('[') {
            rest = &rest[at + 2..];
            continue;
        }
        let dest = &rest[at + 2..];
        let mut depth = 0usize;
        let mut end = dest.len();
        for (k, c) in dest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = k;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let inner = dest[..end].trim();
        let target = match inner.strip_prefix('<') {
            Some(angled) => angled.split('>').next().unwrap_or(""),
            // A title follows the destination after a space.
            None => inner.split_whitespace().next().unwrap_or(""),
        };
        out.push(target.to_string());
        rest = &dest[end.min(dest.len())..];
    }
    out
}

/// The destination of a reference definition `[label]: target`, if `line` is one.
fn reference_definition(line: &str) -> Option<String> {
    let t = line.trim_start();
    if line.len() - t.len() > 3 {
        return None;
    }
    // The label is everything up to the first `]`, which must be followed by `:`.
    let label = t.strip_prefix('[')?;
    let close = label.find(']')?;
    if close == 0 {
        return None;
    }
    let dest = label[close + 1..].strip_prefix(':')?.trim();
    let dest = dest
        .strip_prefix('<')
        .map_or(dest, |d| d.split('>').next().unwrap_or(""));
    dest.split_whitespace().next().map(str::to_string)
}

/// The path part of a link target, or `None` for what is not checked (URLs, mail addresses,
/// anchors within the same file, empty targets).
fn checked_target(target: &str) -> Option<String> {
    let lower = target.to_ascii_lowercase();
    if target.is_empty()
        || target.starts_with('#')
        || ["http:", "https:", "mailto:"]
            .iter()
            .any(|s| lower.starts_with(s))
    {
        return None;
    }
    let path = target.split(['#', '?']).next().unwrap_or("");
    (!path.is_empty()).then(|| path.to_string())
}

/// Decodes `%XX` escapes (`%20` for a space); anything else is kept.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` with `.` and `..` resolved lexically; `None` if it climbs above its start.
fn lexically_normal(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Checks one link of `file` (relative to `root`).
fn check_link(root: &Path, file: &Path, link: &Link) -> Option<Problem> {
    let decoded = percent_decoded(&link.target);
    let relative = match decoded.strip_prefix('/') {
        Some(from_root) => PathBuf::from(from_root),
        None => file.parent().unwrap_or(Path::new("")).join(&decoded),
    };
    let Some(inside) = lexically_normal(&relative) else {
        return Some(Problem::OutsideRepo);
    };
    let resolved = root.join(inside);
    if !resolved.exists() {
        return Some(Problem::Missing);
    }
    // A symbolic link inside the repository may still lead out of it.
    match (resolved.canonicalize(), root.canonicalize()) {
        (Ok(real), Ok(real_root)) if real.starts_with(&real_root) => None,
        _ => Some(Problem::OutsideRepo),
    }
}

/// Every broken relative link of `files` (relative to `root`).
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<Broken> {
    let mut broken = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            broken.push(Broken {
                file: file.clone(),
                link: Link {
                    line: 0,
                    target: "(file unreadable)".into(),
                },
                problem: Problem::Missing,
            });
            continue;
        };
        for link in relative_links(&text) {
            if let Some(problem) = check_link(root, file, &link) {
                broken.push(Broken {
                    file: file.clone(),
                    link,
                    problem,
                });
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_resolves_inside_the_repository() {
    let root = repo_root();
    let files = markdown_files(&root);
    assert!(
        files.iter().any(|f| f == Path::new("README.md")),
        "no README.md among the Markdown files of {}: {files:?}",
        root.display()
    );
    let broken = broken_links(&root, &files);
    let report: Vec<String> = broken.iter().map(ToString::to_string).collect();
    assert!(
        broken.is_empty(),
        "{} broken link(s) in {} Markdown files:\n{}",
        broken.len(),
        files.len(),
        report.join("\n")
    );
}

#[test]
fn extractor_finds_links_and_skips_urls_anchors_and_code() {
    let text = "\
# Title
See [the API](docs/api.md#put) and ![a picture](img/a.png \"title\").
[web](https://example.org/x.md), [mail](mailto:a@b.c), [here](#title), [HTTP](HTTP://X.md).
Inline `[not](a-link.md)` and ``[also](not-a-link.md)`` are code.
```
[inside](a/fence.md)
```
~~~sh
[tilde](fence2.md)
~~~
A [link with (parens)](dir/with(paren).md) and <angle> [angled](<sp ace.md>).
[ref]: ../refs/target.md \"Title\"
    [indented]: code-block.md
[a [nested] text](nested.md) ok](not-a-target)
";
    let got: Vec<(usize, String)> = relative_links(text)
        .into_iter()
        .map(|l| (l.line, l.target))
        .collect();
    let want: Vec<(usize, String)> = [
        (2, "docs/api.md"),
        (2, "img/a.png"),
        (11, "dir/with(paren).md"),
        (11, "sp ace.md"),
        (12, "../refs/target.md"),
        (14, "nested.md"),
    ]
    .into_iter()
    .map(|(l, t)| (l, t.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn checker_reports_missing_and_outside_links_on_a_temp_tree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("repo");
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    std::fs::write(tmp.path().join("outside.md"), "# out\n").expect("write");
    write(
        "README.md",
        "[ok](docs/guide.md#top) [dir](docs/) [root](/docs/guide.md) [space](docs/a%20b.md)\n\
         [broken](docs/missing.md)\n\
         [escape](../outside.md)\n\
         [sneaky](docs/../../outside.md)\n\
         [web](https://example.org/missing.md)\n",
    );
    write(
        "docs/guide.md",
        "[back](../README.md) [lost](./gone/x.rs)\n",
    );
    write("docs/a b.md", "[self](#x)\n");
    write("target/debug/ignored.md", "[broken](nowhere.md)\n");
    std::os::unix::fs::symlink(tmp.path().join("outside.md"), root.join("docs/link.md"))
        .expect("symlink");
    write("docs/more.md", "[through a symlink](link.md)\n");

    // Not a git checkout: the walk finds the files, without `target/`.
    let files = walk_markdown(&root);
    let mut names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "README.md",
            "docs/a b.md",
            "docs/guide.md",
            "docs/link.md",
            "docs/more.md"
        ]
    );

    let broken = broken_links(
        &root,
        &[
            PathBuf::from("README.md"),
            "docs/guide.md".into(),
            "docs/more.md".into(),
        ],
    );
    let got: Vec<(String, usize, String, Problem)> = broken
        .into_iter()
        .map(|b| {
            (
                b.file.display().to_string(),
                b.link.line,
                b.link.target,
                b.problem,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "README.md".into(),
                2,
                "docs/missing.md".into(),
                Problem::Missing
            ),
            (
                "README.md".into(),
                3,
                "../outside.md".into(),
                Problem::OutsideRepo
            ),
            (
                "README.md".into(),
                4,
                "docs/../../outside.md".into(),
                Problem::OutsideRepo
            ),
            (
                "docs/guide.md".into(),
                1,
                "./gone/x.rs".into(),
                Problem::Missing
            ),
            (
                "docs/more.md".into(),
                1,
                "link.md".into(),
                Problem::OutsideRepo
            ),
        ]
    );

    // The whole-tree check fails on such a tree, naming every broken link.
    let report: Vec<String> = broken_links(&root, &walk_markdown(&root))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(report.len(), 5, "{report:#?}");
    assert!(report.contains(&"README.md:2: (docs/missing.md) no such file".to_string()));
}
