//! The `credentials` table: each secured endpoint's DTLS PSK identity and key.

use rusqlite::params;

use super::{Result, Store, StoreError};

/// One endpoint's credentials as stored, key included: for the DTLS layer only.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub endpoint: String,
    pub psk_identity: String,
    pub psk_key: Vec<u8>,
    pub added_at_ms: i64,
}

/// The key is a secret: it never shows in logs or debug output.
impl std::fmt::Debug for CredentialRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialRecord")
            .field("endpoint", &self.endpoint)
            .field("psk_identity", &self.psk_identity)
            .field("psk_key", &"<secret>")
            .finish()
    }
}

impl Store {
    /// Sets the credentials of `r.endpoint` (replacing earlier ones). An identity that belongs
    /// to another endpoint is refused.
    pub fn put_credential(&self, r: &CredentialRecord) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            let owner: Option<String> = tx
                .query_row(
                    "SELECT endpoint FROM credentials WHERE psk_identity = ?1",
                    [&r.psk_identity],
                    |row| row.get(0),
                )
                .ok();
            if owner.is_some_and(|o| o != r.endpoint) {
                return Err(StoreError::Exists(format!(
                    "PSK identity {:?} (of another endpoint)",
                    r.psk_identity
                )));
            }
            tx.execute(
                "INSERT INTO credentials (endpoint, psk_identity, psk_key, added_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(endpoint) DO UPDATE SET psk_identity = ?2, psk_key = ?3,
                    added_at_ms = ?4",
                params![r.endpoint, r.psk_identity, r.psk_key, r.added_at_ms],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Removes the credentials of `endpoint`; false if it had none.
    pub fn delete_credential(&self, endpoint: &str) -> Result<bool> {
        self.with(|c| Ok(c.execute("DELETE FROM credentials WHERE endpoint = ?1", [endpoint])? > 0))
    }

    /// Every endpoint's credentials, by endpoint.
    pub fn credentials(&self) -> Result<Vec<CredentialRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT endpoint, psk_identity, psk_key, added_at_ms FROM credentials
                 ORDER BY endpoint",
            )?;
            let rows = st.query_map(params![], |r| {
                Ok(CredentialRecord {
                    endpoint: r.get(0)?,
                    psk_identity: r.get(1)?,
                    psk_key: r.get(2)?,
                    added_at_ms: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn record(ep: &str, id: &str) -> CredentialRecord {
        CredentialRecord {
            endpoint: ep.into(),
            psk_identity: id.into(),
            psk_key: vec![1, 2, 3],
            added_at_ms: 5,
        }
    }

    #[test]
    fn credentials_are_kept_replaced_and_removed() {
        crate::store::both::on_sqlite(credentials_are_kept_replaced_and_removed_on)
    }

    pub(crate) fn credentials_are_kept_replaced_and_removed_on(open: crate::store::both::Open<'_>) {
        let s = open();
        s.put_credential(&record("a", "id-a")).unwrap();
        s.put_credential(&record("b", "id-b")).unwrap();
        // Another endpoint's identity is refused; the same endpoint may change its own.
        assert!(matches!(
            s.put_credential(&record("b", "id-a")),
            Err(StoreError::Exists(_))
        ));
        s.put_credential(&record("b", "id-b2")).unwrap();
        drop(s);
        let s = open();
        let ids: Vec<_> = s
            .credentials()
            .unwrap()
            .into_iter()
            .map(|r| (r.endpoint, r.psk_identity))
            .collect();
        assert_eq!(
            ids,
            vec![("a".into(), "id-a".into()), ("b".into(), "id-b2".into())]
        );
        assert!(s.delete_credential("a").unwrap());
        assert!(!s.delete_credential("a").unwrap());
        assert!(!format!("{:?}", record("a", "x")).contains("[1, 2, 3]"));
    }
}
