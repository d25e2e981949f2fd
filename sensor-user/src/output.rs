//! Where documents go: one JSON line each, flushed at once so a reader sees alerts live.

use std::{
    fs::OpenOptions,
    io::{self, Write},
};

use crate::{config::OutputTarget, ecs::Document, error::Error};

/// An open sink.
pub struct Output {
    writer: Box<dyn Write + Send>,
    name: String,
}

impl Output {
    /// Opens stdout, or the file in append mode (created if missing, mode 0600).
    pub fn open(target: &OutputTarget) -> Result<Self, Error> {
        match target {
            OutputTarget::Stdout => Ok(Self { writer: Box::new(io::stdout()), name: "stdout".to_owned() }),
            OutputTarget::File(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                let name = path.display().to_string();
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|source| Error::Output { path: name.clone(), source })?;
                Ok(Self { writer: Box::new(file), name })
            }
        }
    }

    /// Writes one document as a line.
    pub fn write(&mut self, document: &Document) -> Result<(), Error> {
        let error = |source| Error::Output { path: self.name.clone(), source };
        let mut line = serde_json::to_vec(document).map_err(|e| error(io::Error::other(e)))?;
        line.push(b'\n');
        self.writer.write_all(&line).and_then(|()| self.writer.flush()).map_err(error)
    }
}
