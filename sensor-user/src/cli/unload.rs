//! `vigie unload`: detaches and removes every program and map agents left pinned with
//! `keep_loaded` (the package's removal runs it).

use std::{fs, io, path::PathBuf};

use clap::Args;

use super::print;
use crate::{
    error::Error,
    kernel::pins::{Previous, DEFAULT_ROOT},
};

/// Options of `vigie unload`.
#[derive(Debug, Args)]
pub struct UnloadArgs {
    /// Where the programs were pinned (`pin_dir` of the config).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT)]
    pub pin_dir: PathBuf,
}

/// Detaches every generation under the pin directory, removes it, and says what it removed.
pub fn run(args: &UnloadArgs) -> Result<(), Error> {
    let root = &args.pin_dir;
    let generations = Previous::find(root, None, "")?;
    let count = generations.len();
    let mut links = 0;
    for generation in generations {
        links += generation.detach_and_remove()?;
    }
    match fs::remove_dir(root) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(Error::system(format!("removing {}", root.display()), e));
        }
        _ => {}
    }
    print(&format!("{}: {count} generation(s) unloaded, {links} link(s) detached", root.display()))
}
