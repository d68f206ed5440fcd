//! The node secret: the key from which every account's auth token is derived (the log holds
//! only a hash of each token and a public salt). Every node of a cluster needs the same one.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// `DIALTONE_SECRET` if set, else `<data-dir>/node.secret`, created (mode 0600) on first use.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(secret) = std::env::var("DIALTONE_SECRET") {
        anyhow::ensure!(
            secret.len() >= 16,
            "DIALTONE_SECRET must be at least 16 characters"
        );
        return Ok(secret.into_bytes());
    }
    let path = data_dir.join("node.secret");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim();
            anyhow::ensure!(
                text.len() >= 16,
                "{} is too short to be a secret",
                path.display()
            );
            Ok(text.as_bytes().to_vec())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let secret = hex::encode(rand::random::<[u8; 32]>());
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(secret.as_bytes())
                .and_then(|_| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(secret.into_bytes())
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}
