//! Format 2 bytes written by the licd before lease tokens (the log of a small cluster and
//! its state after it), decoded by the mirror types and upgraded.

use super::*;
use crate::codec::{decode, encode};
use crate::types::TokenHash;

/// The log, as format 2 encoded each entry's request: install lic-1 (MACs 1 and 2), allocate
/// a (MAC 1, 6 cores), allocate b (MAC 2, 4 cores), release b, allocate a again (8 cores).
const LOG: [&str; 5] = [
    "01fb102703722d3000056c69632d310c4578616d706c6520436f7270fbe80301fc00ca9a3b100402\
     1130323a30303a30303a30303a30303a30311130323a30303a30303a30303a30303a303201036f63\
     7201",
    "01fb112703722d31020161001130323a30303a30303a30303a30303a303106fb3075",
    "01fb122703722d32020162001130323a30303a30303a30303a30303a303204fb3075",
    "01fb132703722d33030162",
    "01fb142703722d34020161001130323a30303a30303a30303a30303a303108fb3075",
];

/// The state format 2 reached after [`LOG`], as its snapshots encode it.
const STATE: &str = "fb142701056c69632d31056c69632d310c4578616d706c6520436f7270fbe80301fc00ca9a3b1004\
     021130323a30303a30303a30303a30303a30311130323a30303a30303a30303a30303a303201036f\
     637201010161056c69632d311130323a30303a30303a30303a30303a30310808fb3075fb142702fb\
     30750503722d30fb102700056c69632d310c4578616d706c6520436f7270fbe80301fc00ca9a3b10\
     04021130323a30303a30303a30303a30303a30311130323a30303a30303a30303a30303a30320103\
     6f6372010001056c69632d3100000003722d31fb1127020161001130323a30303a30303a30303a30\
     303a303106fb307500030161056c69632d311130323a30303a30303a30303a30303a30310606fb30\
     75fb112700fb307500061003722d32fb1227020162001130323a30303a30303a30303a30303a3032\
     04fb307500030162056c69632d311130323a30303a30303a30303a30303a30320404fb3075fb1227\
     01fb3075000a1003722d33fb13270301620004016201056c69632d311130323a30303a30303a3030\
     3a30303a30320404fb3075fb122701fb307503722d34fb1427020161001130323a30303a30303a30\
     303a30303a303108fb307500030161056c69632d311130323a30303a30303a30303a30303a303108\
     08fb3075fb142702fb30750108100503722d3003722d3103722d3203722d3303722d340305";

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn format_2_bytes_decode_exactly_and_upgrade() {
    let mut replayed = LicenseState::new();
    for hex in LOG {
        let old: Request2 = decode(&bytes(hex)).unwrap();
        // The mirror is exact: it encodes back to the very bytes.
        assert_eq!(encode(&old).unwrap(), bytes(hex));
        let request = Request::from(old);
        if let Command::Allocate(a) = &request.command {
            assert_eq!((a.token_hash, a.presented), (None, None));
        }
        assert!(replayed.apply(&request).is_ok(), "{request:?}");
    }
    let old: LicenseState2 = decode(&bytes(STATE)).unwrap();
    assert_eq!(encode(&old).unwrap(), bytes(STATE));
    let upgraded = LicenseState::from(old);
    // Re-applying the old log by format 2's rules computes the state format 2 computed: a
    // replica that starts from an older snapshot agrees with one that starts from this one.
    assert_eq!(replayed, upgraded);
    let a = &upgraded.allocations()[&NodeName::new("a").unwrap()];
    assert_eq!((a.cores.get(), a.token_hash), (8, None));
    assert_eq!(upgraded.remembered_requests(), 5);
}

#[test]
fn an_upgraded_allocation_takes_a_token_from_its_own_mac() {
    let mut state = LicenseState::from(decode::<LicenseState2>(&bytes(STATE)).unwrap());
    let a = NodeName::new("a").unwrap();
    let held = state.allocations()[&a].clone();
    let allocate = |mac: MacAddr, id: &str| Request {
        time: None,
        request_id: RequestId::new(id).unwrap(),
        command: Command::Allocate(Allocate {
            node: a.clone(),
            license: None,
            mac,
            cores: held.cores,
            lease_ttl: held.lease_ttl,
            token_hash: Some(TokenHash([1; 32])),
            presented: None,
        }),
    };
    let other_mac = MacAddr::from_bytes([2, 0, 0, 0, 0, 2]);
    let refused = state.apply(&allocate(other_mac, "thief")).unwrap_err();
    assert_eq!(refused.code, crate::Code::NodeInUse);
    let Ok(crate::Outcome::Allocated(grant)) = state.apply(&allocate(held.mac, "agent")) else {
        panic!("the upgraded allocation was not replaced from its own MAC");
    };
    assert!(grant.replaced);
    assert_eq!(state.allocations()[&a].token_hash, Some(TokenHash([1; 32])));
    // From then on its token is needed, from its own MAC too.
    let refused = state.apply(&allocate(held.mac, "again")).unwrap_err();
    assert_eq!(refused.code, crate::Code::NodeInUse);
}
