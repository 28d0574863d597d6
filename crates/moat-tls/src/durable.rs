//! Crash-safe creation of the CA's files: a reader sees either no file or the complete file, and
//! once we report success the bytes and the directory entry are on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

use crate::TlsError;

/// What [`create_durably`] found at the destination.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Created {
    /// Our bytes are now at the destination.
    New,
    /// Another writer (a concurrent `moat serve`) created the file first; ours were discarded.
    AlreadyExisted,
}

/// Writes `bytes` to `dir/name` with permissions `mode`, unless that file already exists.
///
/// The bytes go to a temporary file which is fsynced and then hard-linked into place: unlike
/// rename, linking never replaces an existing file, so two processes racing to create a CA cannot
/// end up with one's key next to the other's certificate. The directory is fsynced last so the
/// new entry survives a crash.
pub(crate) fn create_durably(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<Created, TlsError> {
    let dest = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", random_suffix()?));
    let result = write_synced(&temp, bytes, mode).and_then(|()| match fs::hard_link(&temp, &dest) {
        Ok(()) => Ok(Created::New),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(Created::AlreadyExisted),
        Err(err) => Err(TlsError::io("create", &dest, err)),
    });
    // The temporary name is never read; failing to remove it only leaves litter behind.
    let _ = fs::remove_file(&temp);
    let created = result?;
    sync_dir(dir)?;
    Ok(created)
}

fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    // The mode is set at creation, so the key is never readable by others, not even briefly.
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|err| TlsError::io("create", path, err))?;
    // Set explicitly as well: the creation mode is masked by the umask, and ca.crt must be
    // world-readable for clients to pick it up.
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(|err| TlsError::io("set permissions of", path, err))?;
    file.write_all(bytes).map_err(|err| TlsError::io("write", path, err))?;
    file.sync_all().map_err(|err| TlsError::io("sync", path, err))
}

fn sync_dir(dir: &Path) -> Result<(), TlsError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|err| TlsError::io("sync directory", dir, err))
}

fn random_suffix() -> Result<String, TlsError> {
    let mut bytes = [0u8; 8];
    SystemRandom::new().fill(&mut bytes).map_err(|_| TlsError::Randomness)?;
    Ok(hex(&bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_with_mode_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(create_durably(dir.path(), "k", b"first", 0o600).unwrap(), Created::New);
        assert_eq!(create_durably(dir.path(), "k", b"second", 0o600).unwrap(), Created::AlreadyExisted);
        assert_eq!(fs::read(dir.path().join("k")).unwrap(), b"first");
        assert_eq!(fs::metadata(dir.path().join("k")).unwrap().permissions().mode() & 0o777, 0o600);
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(entries, ["k"]);
    }
}
