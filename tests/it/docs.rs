//! The settings as documented: the README's tables and wrangler.toml say what the code reads
//! (`shared::settings` for both shells, clap for gpu-server's own).

use clap::CommandFactory;
use tests::root;

#[derive(clap::Parser)]
struct Serve {
    #[command(flatten)]
    args: gpu_server::server::ServeArgs,
}

fn readme_rows() -> Vec<String> {
    std::fs::read_to_string(root().join("README.md"))
        .expect("README.md")
        .lines()
        .filter(|l| l.starts_with("| `"))
        // Table cells escape `|` as `\|`.
        .map(|l| l.replace("\\|", "|"))
        .collect()
}

#[test]
fn the_readme_lists_every_setting_with_its_default() {
    let rows = readme_rows();
    for setting in shared::settings::BOTH {
        let name = format!("`{}`", setting.env);
        let row = rows
            .iter()
            .find(|r| r.contains(&name))
            .unwrap_or_else(|| panic!("README.md has no settings row for {name}"));
        if !setting.default.is_empty() {
            assert!(
                row.contains(&format!("`{}`", setting.default)),
                "README.md's row for {name} does not say its default `{}`: {row}",
                setting.default
            );
        }
    }
    for arg in Serve::command().get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let name = format!("`{}`", env.to_string_lossy());
        assert!(
            rows.iter().any(|r| r.contains(&name)),
            "README.md has no settings row for {name} (gpu-server serve)"
        );
    }
}

#[test]
fn wrangler_sets_only_settings_the_worker_reads() {
    let toml = std::fs::read_to_string(root().join("wrangler.toml")).expect("wrangler.toml");
    let vars = toml
        .split("[vars]")
        .nth(1)
        .expect("wrangler.toml has [vars]")
        .split("\n[")
        .next()
        .unwrap_or_default();
    let names: Vec<&str> = vars
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| !k.is_empty())
        .collect();
    assert!(names.len() >= 4, "{names:?}");
    for name in names {
        assert!(
            shared::settings::BOTH.iter().any(|s| s.env == name),
            "wrangler.toml sets {name}, which is not in shared::settings"
        );
    }
}
