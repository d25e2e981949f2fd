//! The published ECS field definitions the document tests check every output field against:
//! the npm package `@elastic/ecs`, whose main entry exports `EcsFlat` (flat name → type,
//! normalize, allowed values) and `EcsVersion`, extracted once to JSON under the target dir.
//!
//! The package's `generated/ecs_flat.js` is stale (it says ECS 8.12.0-dev and lacks fields
//! 9.x has); its `build/commonjs` main entry is the 9.4.0 one, so that is what is read.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{packages, say};
use crate::command::{self, tool};
use crate::workspace;

/// The ECS version the agent's documents claim (`ecs.version`) and are checked against.
pub const VERSION: &str = "9.4.0";

/// Writes the JSON `{version, fields}` from the unpacked package: node does the `require`.
const EXTRACT: &str = "const [pkg, out] = process.argv.slice(1);\
    const { EcsFlat, EcsVersion } = require(pkg);\
    require('fs').writeFileSync(out, JSON.stringify({ version: EcsVersion, fields: EcsFlat }));";

/// `<target>/ecs/<VERSION>/ecs_flat.json`, where the tests look for it.
fn path() -> Result<PathBuf> {
    Ok(workspace::target_dir()?.join("ecs").join(VERSION).join("ecs_flat.json"))
}

/// Fetches and extracts the definitions unless they are there already.
pub fn ensure() -> Result<()> {
    let json = path()?;
    if json.is_file() {
        say(&format!("ECS {VERSION} definitions: {}", json.display()));
        return Ok(());
    }
    let search_path = command::search_path()?;
    let missing =
        ["npm", "node", "tar"].into_iter().find(|c| packages::find_command(c, &search_path).is_none());
    if let Some(missing) = missing {
        say(&format!("ECS {VERSION} definitions: no {missing} (see above), not fetching them"));
        return Ok(());
    }
    let dir = json.parent().context("the definitions' path has a parent")?;
    let work = dir.join("download");
    // A half-done earlier attempt is started over.
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("cannot remove {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let package = format!("@elastic/ecs@{VERSION}");
    // It prints the tarball's name, which is known.
    command::output(tool("npm")?.args(["pack", "--silent", &package, "--pack-destination"]).arg(&work))?;
    let tarball = work.join(format!("elastic-ecs-{VERSION}.tgz"));
    command::run(tool("tar")?.arg("xzf").arg(&tarball).arg("-C").arg(&work))?;
    let partial = dir.join("ecs_flat.json.partial");
    command::run(tool("node")?.args(["-e", EXTRACT]).arg(work.join("package")).arg(&partial))?;
    check_version(&partial)?;
    fs::rename(&partial, &json).with_context(|| format!("cannot move it to {}", json.display()))?;
    fs::remove_dir_all(&work).with_context(|| format!("cannot remove {}", work.display()))?;
    say(&format!("ECS {VERSION} definitions: fetched {package} into {}", json.display()));
    Ok(())
}

/// The extracted file says it is [`VERSION`]: a package whose entry carries other definitions
/// would otherwise be taken for it.
fn check_version(json: &Path) -> Result<()> {
    let text = fs::read_to_string(json).with_context(|| format!("cannot read {}", json.display()))?;
    let quoted = format!("{{\"version\":\"{VERSION}\",");
    anyhow::ensure!(text.starts_with(&quoted), "{} is not ECS {VERSION}", json.display());
    Ok(())
}
