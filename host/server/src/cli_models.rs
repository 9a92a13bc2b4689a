//! `cinder models ...`: list, inspect and alias the configured models without starting the
//! server. `alias` edits the config file in place (comments kept), so a running server picks
//! the change up through its config watch.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use cinder_config::Config;

/// `cinder models list`.
pub fn list(config: &Config, out: &mut impl Write) -> Result<()> {
    for m in &config.models {
        writeln!(out, "{}", m.id)?;
        writeln!(out, "  path     {}", m.path.display())?;
        writeln!(
            out,
            "  backend  {}",
            format!("{:?}", m.backend).to_lowercase()
        )?;
        if !m.aliases.is_empty() {
            writeln!(out, "  aliases  {}", m.aliases.join(", "))?;
        }
        if m.embeddings {
            writeln!(out, "  serves   chat and embeddings")?;
        }
        match cinder_core::summarize(&m.path) {
            Ok(s) => writeln!(
                out,
                "  model    {} {}, {} parameters, context {}, {}",
                s.architecture,
                s.name.as_deref().unwrap_or(""),
                millions(s.parameters),
                s.context_length.map_or("?".into(), |c| c.to_string()),
                quantization(&s),
            )?,
            Err(e) => writeln!(out, "  model    unreadable: {e}")?,
        }
    }
    Ok(())
}

fn millions(n: u64) -> String {
    format!("{:.1}M", n as f64 / 1e6)
}

fn quantization(s: &cinder_core::ModelSummary) -> String {
    s.tensor_types
        .iter()
        .map(|(ty, n)| format!("{ty}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cinder models inspect <id, alias or path>`.
pub fn inspect(
    models: &[cinder_config::ModelConfig],
    model: &str,
    template: bool,
    out: &mut impl Write,
) -> Result<()> {
    let path = models
        .iter()
        .find(|m| m.id == model || m.aliases.iter().any(|a| a == model))
        .map(|m| m.path.clone())
        .unwrap_or_else(|| model.into());
    let s = cinder_core::summarize(&path).with_context(|| {
        format!(
            "`{model}` is no configured model and {} no readable GGUF file or model folder",
            path.display()
        )
    })?;
    writeln!(
        out,
        "file          {} ({:.1} MB)",
        path.display(),
        s.file_bytes as f64 / 1e6
    )?;
    writeln!(out, "architecture  {}", s.architecture)?;
    if let Some(name) = &s.name {
        writeln!(out, "name          {name}")?;
    }
    writeln!(out, "parameters    {}", millions(s.parameters))?;
    writeln!(out, "quantization  {}", quantization(&s))?;
    let opt = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
    writeln!(out, "context       {}", opt(s.context_length))?;
    writeln!(
        out,
        "layers        {} (embedding {}, heads {}, kv heads {})",
        opt(s.layers),
        opt(s.embedding),
        opt(s.heads),
        opt(s.kv_heads)
    )?;
    writeln!(out, "vocabulary    {}", s.vocab_size)?;
    if !s.stop_tokens.is_empty() {
        let stops: Vec<String> = s
            .stop_tokens
            .iter()
            .map(|(id, text)| format!("{id} {text:?}"))
            .collect();
        writeln!(out, "stops at      {}", stops.join(", "))?;
    }
    if s.cannot_serve.is_empty() {
        writeln!(out, "serves        yes")?;
    } else {
        writeln!(out, "serves        no: {}", s.cannot_serve.join("; "))?;
    }
    match (&s.chat_template, template) {
        (Some(t), true) => writeln!(out, "chat template\n{t}")?,
        (Some(t), false) => writeln!(
            out,
            "chat template {} lines{} (--template shows it)",
            t.lines().count(),
            if s.template_built_in {
                ", built in (the file has none)"
            } else {
                ""
            }
        )?,
        (None, _) => writeln!(out, "chat template none")?,
    }
    Ok(())
}

/// `cinder models alias <id> <alias>...` (or `--remove`): rewrites that model's `aliases`
/// line in the config file, checks the result parses and says what was asked, then replaces
/// the file in one rename.
pub fn alias(path: &Path, id: &str, names: &[String], remove: bool) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let config: Config = toml::from_str(&text).with_context(|| path.display().to_string())?;
    let Some(model) = config.models.iter().find(|m| m.id == id) else {
        bail!("no [[models]] entry has id `{id}`");
    };
    let mut aliases = model.aliases.clone();
    if remove {
        aliases.retain(|a| !names.contains(a));
    } else {
        for n in names {
            if !aliases.contains(n) {
                aliases.push(n.clone());
            }
        }
    }
    let edited = set_aliases_line(&text, id, &aliases)?;
    let check: Config = toml::from_str(&edited).context("the edited file does not parse")?;
    check.validate()?;
    if check.models.iter().find(|m| m.id == id).map(|m| &m.aliases) != Some(&aliases) {
        bail!(
            "could not edit the aliases of `{id}` in place; edit {} by hand",
            path.display()
        );
    }
    let tmp = path.with_extension("toml.edit");
    std::fs::write(&tmp, edited)?;
    std::fs::rename(&tmp, path)?;
    Ok(aliases)
}

/// The config text with `aliases = [...]` of the `[[models]]` block whose id is `id` set to
/// `aliases` (inserted after the id line when the block has none).
fn set_aliases_line(text: &str, id: &str, aliases: &[String]) -> Result<String> {
    let value = toml::Value::Array(aliases.iter().cloned().map(toml::Value::String).collect());
    let line = format!("aliases = {value}");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_owned();
    let mut block_start = None;
    let mut target = None;
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            block_start = (t == "[[models]]").then_some(i);
        } else if block_start.is_some()
            && key(t) == "id"
            && toml::from_str::<toml::Table>(t)
                .ok()
                .and_then(|v| v.get("id").and_then(|v| v.as_str()).map(str::to_owned))
                .as_deref()
                == Some(id)
        {
            target = Some(i);
        }
    }
    let Some(id_line) = target else {
        bail!("no `id = \"{id}\"` line under [[models]]");
    };
    let end = (id_line + 1..lines.len())
        .find(|&i| lines[i].trim().starts_with('['))
        .unwrap_or(lines.len());
    match (id_line..end).find(|&i| key(lines[i].trim()) == "aliases") {
        Some(i) if lines[i].contains(']') => lines[i] = line,
        Some(_) => bail!("the aliases of `{id}` span several lines; edit them by hand"),
        None => lines.insert(id_line + 1, line),
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "# models\n[[models]]\nid = \"a\"\npath = \"x\"\n\n[[models]]\n# the second\nid = \"b\"\npath = \"y\"\naliases = [\"old\"]\n";

    #[test]
    fn aliases_are_inserted_or_replaced_in_the_right_block() {
        let t = set_aliases_line(CONFIG, "a", &["gpt-4o-mini".into()]).unwrap();
        assert!(
            t.contains("id = \"a\"\naliases = [\"gpt-4o-mini\"]\npath = \"x\""),
            "{t}"
        );
        let t = set_aliases_line(CONFIG, "b", &["new".into(), "old".into()]).unwrap();
        assert!(t.contains("aliases = [\"new\", \"old\"]"), "{t}");
        assert!(t.contains("# the second"), "comments are kept: {t}");
        assert!(set_aliases_line(CONFIG, "c", &[]).is_err());
    }

    #[test]
    fn alias_edits_the_file_and_refuses_clashes() {
        let dir = std::env::temp_dir().join(format!("cinder-alias-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cinder.toml");
        std::fs::write(&path, CONFIG).unwrap();
        let got = alias(&path, "a", &["house".into()], false).unwrap();
        assert_eq!(got, ["house"]);
        let c: Config = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(c.models[0].aliases, ["house"]);
        assert!(
            alias(&path, "a", &["b".into()], false).is_err(),
            "an id is no alias"
        );
        assert_eq!(
            alias(&path, "b", &["old".into()], true).unwrap(),
            Vec::<String>::new()
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
