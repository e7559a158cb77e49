//! Keeping the store's files to their owner: the data dir 0700, the database 0600. SQLite gives
//! its `-wal` and `-shm` files the database's permissions when it creates them; ones that exist
//! already are restricted here too. A no-op where there are no Unix permissions.

use std::path::Path;

use super::{Result, StoreError};

/// Makes `dir` 0700 and the database `db` (created empty if missing) and its companions 0600.
#[cfg(unix)]
pub(super) fn restrict(dir: &Path, db: &Path) -> Result<()> {
    use std::fs::{OpenOptions, Permissions, set_permissions};
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let fail = |p: &Path, e| StoreError::Permissions(p.display().to_string(), e);
    set_permissions(dir, Permissions::from_mode(0o700)).map_err(|e| fail(dir, e))?;
    // Created 0600 from the start (an empty file is an empty database), so the token is never
    // written to a file anyone else could read.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(db)
        .map_err(|e| fail(db, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = Path::new(&name);
        if path.exists() {
            set_permissions(path, Permissions::from_mode(0o600)).map_err(|e| fail(path, e))?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub(super) fn restrict(_dir: &Path, _db: &Path) -> Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::store::Store;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_data_dir_is_0700_and_the_database_files_0600_even_when_they_were_open() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = Store::open(&dir).unwrap();
        s.set_setting("admin_token", "secret").unwrap();
        assert_eq!(mode(&dir), 0o700);
        for f in ["otafleet.db", "otafleet.db-wal", "otafleet.db-shm"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        drop(s);
        // A database left world-readable by an older version is restricted when opened.
        let db = dir.join("otafleet.db");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.setting("admin_token").unwrap().as_deref(), Some("secret"));
        assert_eq!((mode(&dir), mode(&db)), (0o700, 0o600));
    }
}
