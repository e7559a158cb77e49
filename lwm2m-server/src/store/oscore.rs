//! The `oscore_contexts` table: each OSCORE endpoint's IDs, Master Secret and Salt, and its
//! sender sequence number reservation.

use rusqlite::params;

use super::{Result, Store, StoreError};
use crate::coap::oscore::SeqStore;

/// One endpoint's OSCORE context as stored, secrets included: for the OSCORE layer only.
#[derive(Clone, PartialEq, Eq)]
pub struct OscoreRecord {
    pub endpoint: String,
    /// The server's Sender ID (the device's Recipient ID).
    pub sender_id: Vec<u8>,
    /// The server's Recipient ID: the kid of the device's requests.
    pub recipient_id: Vec<u8>,
    pub master_secret: Vec<u8>,
    pub master_salt: Vec<u8>,
    /// Every sender sequence number below it may have been used.
    pub seq_reserved: u64,
    pub added_at_ms: i64,
}

/// The secret and salt never show in logs or debug output.
impl std::fmt::Debug for OscoreRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OscoreRecord")
            .field("endpoint", &self.endpoint)
            .field("sender_id", &self.sender_id)
            .field("recipient_id", &self.recipient_id)
            .field("master_secret", &"<secret>")
            .field("seq_reserved", &self.seq_reserved)
            .finish()
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Sets `r.endpoint`'s OSCORE context. A Recipient ID of another endpoint is refused. When
    /// the endpoint had a context, its sequence number reservation is kept (never lowered), so
    /// provisioning the same keys again cannot make the server reuse a nonce. Returns the
    /// reservation in force.
    pub fn put_oscore(&self, r: &OscoreRecord) -> Result<u64> {
        self.with(|c| {
            let tx = c.transaction()?;
            let owner: Option<String> = tx
                .query_row(
                    "SELECT endpoint FROM oscore_contexts WHERE recipient_id = ?1",
                    [&r.recipient_id],
                    |row| row.get(0),
                )
                .ok();
            if owner.is_some_and(|o| o != r.endpoint) {
                return Err(StoreError::Exists(
                    "OSCORE Recipient ID (of another endpoint)".into(),
                ));
            }
            tx.execute(
                "INSERT INTO oscore_contexts (endpoint, sender_id, recipient_id, master_secret,
                    master_salt, seq_reserved, added_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(endpoint) DO UPDATE SET sender_id = ?2, recipient_id = ?3,
                    master_secret = ?4, master_salt = ?5,
                    seq_reserved = CASE WHEN oscore_contexts.seq_reserved > ?6
                        THEN oscore_contexts.seq_reserved ELSE ?6 END, added_at_ms = ?7",
                params![
                    r.endpoint,
                    r.sender_id,
                    r.recipient_id,
                    r.master_secret,
                    r.master_salt,
                    to_i64(r.seq_reserved),
                    r.added_at_ms
                ],
            )?;
            let reserved: i64 = tx.query_row(
                "SELECT seq_reserved FROM oscore_contexts WHERE endpoint = ?1",
                [&r.endpoint],
                |row| row.get(0),
            )?;
            tx.commit()?;
            Ok(reserved.max(0) as u64)
        })
    }

    /// Removes `endpoint`'s OSCORE context; false if it had none.
    pub fn delete_oscore(&self, endpoint: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM oscore_contexts WHERE endpoint = ?1",
                [endpoint],
            )? > 0)
        })
    }

    /// Every OSCORE context, by endpoint.
    pub fn oscore_contexts(&self) -> Result<Vec<OscoreRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT endpoint, sender_id, recipient_id, master_secret, master_salt,
                    seq_reserved, added_at_ms FROM oscore_contexts ORDER BY endpoint",
            )?;
            let rows = st.query_map(params![], |r| {
                Ok(OscoreRecord {
                    endpoint: r.get(0)?,
                    sender_id: r.get(1)?,
                    recipient_id: r.get(2)?,
                    master_secret: r.get(3)?,
                    master_salt: r.get(4)?,
                    seq_reserved: r.get::<_, i64>(5)?.max(0) as u64,
                    added_at_ms: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Raises `endpoint`'s sender sequence number reservation to `reserved`, durable against
    /// power loss before it returns: the store runs WAL with `synchronous = NORMAL`, which may
    /// lose the last commits when the power goes, so this one commit is made with `FULL` (the
    /// WAL is synced at the commit).
    pub fn reserve_oscore_seq(&self, endpoint: &str, reserved: u64) -> Result<()> {
        self.with(|c| {
            // PostgreSQL syncs every commit (synchronous_commit on) already.
            let sqlite = !c.is_postgres();
            if sqlite {
                c.batch("PRAGMA synchronous = FULL")?;
            }
            let n = c.execute(
                "UPDATE oscore_contexts SET seq_reserved = CASE WHEN seq_reserved > ?2 THEN seq_reserved ELSE ?2 END
                 WHERE endpoint = ?1",
                params![endpoint, to_i64(reserved)],
            );
            if sqlite {
                c.batch("PRAGMA synchronous = NORMAL")?;
            }
            if n? == 0 {
                return Err(StoreError::Sql(rusqlite::Error::QueryReturnedNoRows));
            }
            Ok(())
        })
    }
}

impl SeqStore for Store {
    fn reserve_seq(&self, endpoint: &str, reserved: u64) -> std::result::Result<(), String> {
        self.reserve_oscore_seq(endpoint, reserved)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn record(ep: &str, rid: u8) -> OscoreRecord {
        OscoreRecord {
            endpoint: ep.into(),
            sender_id: vec![0x5e],
            recipient_id: vec![rid],
            master_secret: vec![1; 16],
            master_salt: vec![],
            seq_reserved: 0,
            added_at_ms: 5,
        }
    }

    #[test]
    fn contexts_are_kept_and_the_reservation_never_goes_down() {
        crate::store::both::on_sqlite(contexts_are_kept_and_the_reservation_never_goes_down_on)
    }

    pub(crate) fn contexts_are_kept_and_the_reservation_never_goes_down_on(
        open: crate::store::both::Open<'_>,
    ) {
        let s = open();
        assert_eq!(s.put_oscore(&record("a", 1)).unwrap(), 0);
        s.put_oscore(&record("b", 2)).unwrap();
        assert!(matches!(
            s.put_oscore(&record("b", 1)),
            Err(StoreError::Exists(_))
        ));
        s.reserve_oscore_seq("a", 32).unwrap();
        s.reserve_oscore_seq("a", 16).unwrap();
        assert!(s.reserve_oscore_seq("zz", 16).is_err());
        // Provisioned again with the same keys: the reservation stays.
        assert_eq!(s.put_oscore(&record("a", 1)).unwrap(), 32);
        drop(s);
        let s = open();
        let all = s.oscore_contexts().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].endpoint.as_str(), all[0].seq_reserved), ("a", 32));
        assert!(s.delete_oscore("a").unwrap());
        assert!(!s.delete_oscore("a").unwrap());
        assert!(!format!("{:?}", record("a", 1)).contains("[1, 1"));
    }
}
