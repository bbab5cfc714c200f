//! `wx_access_node`: the hop that delivered the request, named through the CIDR table, else its
//! address, under the cap.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::guard::{EMPTY, LabelGuard, LabelId};
use crate::context::WxContext;
use crate::stack_str::StackStr;

/// With a table, the value of every hop the table does not name.
const UNKNOWN_NODE: &str = "unknown";

/// An access-node entry that is not `CIDR` → non-empty name.
#[derive(Debug, thiserror::Error)]
#[error("invalid access node entry {entry:?}: {reason}")]
pub(crate) struct AccessNodeError {
    /// The entry as `cidr=name`.
    pub(crate) entry: String,
    /// What is wrong with it.
    pub(crate) reason: String,
}

/// CIDR → access-node name, most specific prefix first.
#[derive(Debug, Default)]
pub(crate) struct AccessNodeTable {
    entries: Vec<(IpNet, Arc<str>)>,
}

impl AccessNodeTable {
    /// Parses `(cidr or address, name)` entries.
    pub(crate) fn parse(entries: &[(String, String)]) -> Result<Self, AccessNodeError> {
        let mut parsed = Vec::with_capacity(entries.len());
        for (cidr, name) in entries {
            let invalid = |reason: String| AccessNodeError {
                entry: format!("{cidr}={name}"),
                reason,
            };
            let net = match cidr.trim().parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => cidr
                    .trim()
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|err| invalid(format!("not a CIDR or address: {err}")))?,
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(invalid("the name is empty".to_owned()));
            }
            parsed.push((net, Arc::from(name)));
        }
        parsed.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Ok(AccessNodeTable { entries: parsed })
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn lookup(&self, addr: IpAddr) -> Option<&str> {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.entries
            .iter()
            .find(|(net, _)| net.contains(&addr))
            .map(|(_, name)| &**name)
    }
}

/// The access-node names of the requests: the table and the guard that caps them.
pub(super) struct AccessNodes {
    table: AccessNodeTable,
    guard: LabelGuard,
}

impl AccessNodes {
    pub(super) fn new(table: AccessNodeTable, guard: LabelGuard) -> Self {
        AccessNodes { table, guard }
    }

    /// The `wx_access_node` id of a request.
    pub(super) fn id(&self, ctx: &WxContext) -> LabelId {
        // Fast path: the gateway writes addresses canonically, so a hop seen before is found by
        // its text, without parsing and formatting it again.
        if self.table.is_empty()
            && let Some(id) = ctx.access_hop_text().and_then(|text| self.guard.get(text))
        {
            return id;
        }
        let Some(hop) = ctx.access_hop() else {
            return EMPTY;
        };
        if let Some(name) = self.table.lookup(hop) {
            return self.guard.intern(name);
        }
        if !self.table.is_empty() {
            // With a table, unknown hops are one value rather than a stream of addresses.
            return self.guard.intern(UNKNOWN_NODE);
        }
        // Formatted on the stack: an address is at most 45 bytes.
        let mut buf = StackStr::<48>::new();
        let _ = std::fmt::Write::write_fmt(&mut buf, format_args!("{hop}"));
        self.guard.intern(buf.as_str())
    }

    /// The `wx_access_node` value of an id.
    pub(super) fn value(&self, id: LabelId) -> Arc<str> {
        self.guard.value(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_node_table_prefers_the_most_specific_entry() {
        let table = AccessNodeTable::parse(&[
            ("10.0.0.0/8".into(), "intranet".into()),
            ("10.8.0.0/16".into(), "shanghai-edge".into()),
            ("192.0.2.1".into(), "single".into()),
        ])
        .unwrap();
        assert_eq!(
            table.lookup("10.8.1.2".parse().unwrap()),
            Some("shanghai-edge")
        );
        assert_eq!(table.lookup("10.9.1.2".parse().unwrap()), Some("intranet"));
        assert_eq!(table.lookup("192.0.2.1".parse().unwrap()), Some("single"));
        assert_eq!(
            table.lookup("::ffff:10.8.0.1".parse().unwrap()),
            Some("shanghai-edge")
        );
        assert_eq!(table.lookup("203.0.113.1".parse().unwrap()), None);
    }

    #[test]
    fn bad_access_node_entries_are_named() {
        let err = AccessNodeTable::parse(&[("10.0.0.0/40".into(), "x".into())]).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/40=x"), "{err}");
        let err = AccessNodeTable::parse(&[("10.0.0.0/8".into(), " ".into())]).unwrap_err();
        assert!(err.to_string().contains("name is empty"), "{err}");
    }
}
