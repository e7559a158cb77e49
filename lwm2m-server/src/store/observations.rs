//! The observations the nodes made (issue 18): each active one's token, device, path and node,
//! so that a node a device moved to can take on the notifications another node asked for. The
//! rows go with their registration (migration 13) or when the observation is cancelled.

use rusqlite::params;

use super::{Optional, Result, Store};

/// One observation: the token our Observe request carried (hex), the device and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservationRecord {
    pub token: String,
    pub endpoint: String,
    pub path: String,
    /// The node that made the observation, or took it on last.
    pub node: String,
    pub created_at_ms: i64,
}

impl Store {
    /// Records an observation; one of the same device and path (observed again) is replaced.
    pub fn put_observation(&self, o: &ObservationRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO observations (token, endpoint, path, node, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (endpoint, path) DO UPDATE SET token = excluded.token,
                    node = excluded.node, created_at_ms = excluded.created_at_ms",
                params![o.token, o.endpoint, o.path, o.node, o.created_at_ms],
            )?;
            Ok(())
        })
    }

    /// The observation whose notifications carry `token` (hex), whichever node made it.
    pub fn observation(&self, token: &str) -> Result<Option<ObservationRecord>> {
        self.with(|c| {
            c.query_row(
                "SELECT token, endpoint, path, node, created_at_ms FROM observations
                 WHERE token = ?1",
                [token],
                |r| {
                    Ok(ObservationRecord {
                        token: r.get(0)?,
                        endpoint: r.get(1)?,
                        path: r.get(2)?,
                        node: r.get(3)?,
                        created_at_ms: r.get(4)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Records that `node` now holds the observation of `token`.
    pub fn set_observation_node(&self, token: &str, node: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE observations SET node = ?2 WHERE token = ?1",
                [token, node],
            )? > 0)
        })
    }

    /// Forgets the observation with `token` (cancelled, or ended by the device); true if it
    /// was there.
    pub fn delete_observation(&self, token: &str) -> Result<bool> {
        self.with(|c| Ok(c.execute("DELETE FROM observations WHERE token = ?1", [token])? > 0))
    }

    /// Forgets the observation of `endpoint`'s `path` (cancelled); true if it was there.
    pub fn delete_observation_of(&self, endpoint: &str, path: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM observations WHERE endpoint = ?1 AND path = ?2",
                [endpoint, path],
            )? > 0)
        })
    }
}

/// A token as the table keeps it: lower-case hex.
pub fn token_hex(token: &[u8]) -> String {
    token.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::tests::reg;

    fn obs(token: &str, ep: &str, path: &str) -> ObservationRecord {
        ObservationRecord {
            token: token.into(),
            endpoint: ep.into(),
            path: path.into(),
            node: "node-a".into(),
            created_at_ms: 7,
        }
    }

    #[test]
    fn observations_are_found_by_token_replaced_and_go_with_their_registration() {
        crate::store::both::on_sqlite(
            observations_are_found_by_token_replaced_and_go_with_their_registration_on,
        )
    }

    pub(crate) fn observations_are_found_by_token_replaced_and_go_with_their_registration_on(
        open: crate::store::both::Open<'_>,
    ) {
        let s = open();
        assert_eq!(token_hex(&[0x0a, 0xff, 0]), "0aff00");
        s.put_registration(&reg("dev-1", "r1"), 1).unwrap();
        s.put_registration(&reg("dev-2", "r2"), 1).unwrap();
        let state = obs("aa01", "dev-1", "/5/0/3");
        s.put_observation(&state).unwrap();
        s.put_observation(&obs("aa02", "dev-1", "/5/0/5")).unwrap();
        s.put_observation(&obs("bb01", "dev-2", "/5/0/3")).unwrap();
        assert_eq!(s.observation("aa01").unwrap(), Some(state));
        assert_eq!(s.observation("cc").unwrap(), None);
        // Observed again: the new token replaces the old one.
        s.put_observation(&obs("aa03", "dev-1", "/5/0/3")).unwrap();
        assert_eq!(s.observation("aa01").unwrap(), None);
        assert_eq!(s.observation("aa03").unwrap().unwrap().path, "/5/0/3");
        // Another node takes it on.
        assert!(s.set_observation_node("aa03", "node-b").unwrap());
        assert!(!s.set_observation_node("zz", "node-b").unwrap());
        assert_eq!(s.observation("aa03").unwrap().unwrap().node, "node-b");
        // Ended by the device; cancelled by device and path.
        assert!(s.delete_observation("aa02").unwrap());
        assert!(!s.delete_observation("aa02").unwrap());
        s.put_observation(&obs("aa04", "dev-1", "/5/0/5")).unwrap();
        assert!(!s.delete_observation_of("dev-2", "/5/0/5").unwrap());
        assert!(s.delete_observation_of("dev-1", "/5/0/5").unwrap());
        assert_eq!(s.observation("aa04").unwrap(), None);
        // A registration deleted (de-registered or expired) takes its observations along, and
        // an Update (the upsert) does not.
        s.put_registration(&reg("dev-2", "r2"), 2).unwrap();
        assert!(s.observation("bb01").unwrap().is_some());
        assert!(s.delete_registration("r1").unwrap());
        assert_eq!(s.observation("aa03").unwrap(), None);
        assert_eq!(
            s.delete_expired_registrations(i64::MAX / 2, 0).unwrap(),
            ["dev-2"]
        );
        assert_eq!(s.observation("bb01").unwrap(), None);
        // Kept across reopening.
        s.put_registration(&reg("dev-1", "r1"), 3).unwrap();
        s.put_observation(&obs("dd01", "dev-1", "/3/0/0")).unwrap();
        drop(s);
        assert!(open().observation("dd01").unwrap().is_some());
    }
}
