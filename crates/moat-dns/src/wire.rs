//! DNS messages on the wire: decode a query (hickory-proto), let the [`ZoneData`] decide, and encode
//! the response within what the transport allows. No I/O; the server owns the sockets.

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode, emit_message_parts};
use hickory_proto::serialize::binary::BinEncoder;

use crate::zone::{Answer, ZoneData};

/// The largest UDP response moat sends to an EDNS client, and the payload size it advertises: the
/// DNS Flag Day 2020 value, which avoids IP fragmentation on common paths.
pub const EDNS_UDP_PAYLOAD: u16 = 1232;
/// The largest UDP response to a client without EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// How the query arrived, which bounds the response size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: 512 bytes without EDNS, else the client's payload size up to [`EDNS_UDP_PAYLOAD`];
    /// larger responses are replaced by a header and question with TC set, so the client retries
    /// over TCP.
    Udp,
    /// TCP: up to 65,535 bytes (the 2-byte length prefix).
    Tcp,
}

/// Writes into `out` the response to the DNS message `query`, as seen from `view`. Returns `false`
/// when nothing should be sent: the bytes are not a DNS message, or are a response (answering
/// responses could loop two servers into each other).
pub fn respond(zone: &ZoneData, query: &[u8], view: Option<&str>, transport: Transport, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Ok(request) = Message::from_vec(query) else {
        return false;
    };
    if request.metadata.message_type != MessageType::Query {
        return false;
    }
    let mut metadata = Metadata::response_from_request(&request.metadata);
    let edns = request.edns.as_ref().map(|_| {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_PAYLOAD);
        edns
    });
    let limit = match transport {
        Transport::Tcp => u16::MAX,
        Transport::Udp => match &request.edns {
            Some(client) => client.max_payload().clamp(CLASSIC_UDP_PAYLOAD, EDNS_UDP_PAYLOAD),
            None => CLASSIC_UDP_PAYLOAD,
        },
    };

    let answer = if request.metadata.op_code != OpCode::Query {
        // NOTIFY, UPDATE and the rest have no meaning for a zone that lives in one process.
        Answer::error(ResponseCode::NotImp)
    } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        Answer::error(ResponseCode::BADVERS)
    } else if let [question] = request.queries.as_slice() {
        zone.answer(question, view)
    } else {
        Answer::error(ResponseCode::FormErr)
    };
    metadata.authoritative = answer.is_authoritative();
    metadata.response_code = answer.rcode();
    if encode(&metadata, &request.queries, &answer, true, edns.as_ref(), limit, out) {
        return true;
    }
    // Too big for the transport: no partial RRsets, just TC so the client retries over TCP.
    metadata.truncation = true;
    encode(&metadata, &request.queries, &answer, false, edns.as_ref(), limit, out)
}

/// Encodes one message into `out` (the answer's records only if `with_records`); `false` if it does
/// not fit in `limit` bytes whole.
fn encode(
    metadata: &Metadata,
    queries: &[Query],
    answer: &Answer<'_>,
    with_records: bool,
    edns: Option<&Edns>,
    limit: u16,
    out: &mut Vec<u8>,
) -> bool {
    let sections = if with_records { usize::MAX } else { 0 };
    out.clear();
    let mut encoder = BinEncoder::new(out);
    encoder.set_max_size(limit);
    let emitted = emit_message_parts(
        metadata,
        &mut queries.iter(),
        &mut answer.answers().take(sections),
        &mut answer.authorities().iter().take(sections),
        &mut answer.additionals().iter().take(sections),
        edns,
        None,
        &mut encoder,
    );
    match emitted {
        // The encoder sets TC itself when it had to leave records out.
        Ok(header) => header.metadata.truncation == metadata.truncation,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::{NameEntry, PrivateRecord, ZoneSpec};
    use hickory_proto::rr::{Name, RecordType};
    use std::net::IpAddr;

    fn zone(public: Vec<IpAddr>) -> ZoneData {
        ZoneData::build(&ZoneSpec {
            zone: "moat.internal".into(),
            public,
            names: vec![NameEntry { name: "abc.blob.moat.internal".into() }],
            private: vec![PrivateRecord {
                name: "abc.privatelink.blob.moat.internal".into(),
                view: "vnet-a".into(),
                addrs: vec!["10.0.0.4".parse().unwrap()],
            }],
        })
        .unwrap()
    }

    fn query_bytes(name: &str, qtype: RecordType, edns_payload: Option<u16>) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(payload) = edns_payload {
            let mut edns = Edns::new();
            edns.set_max_payload(payload);
            message.set_edns(edns);
        }
        message.to_vec().unwrap()
    }

    fn ask(zone: &ZoneData, query: &[u8], view: Option<&str>, transport: Transport) -> Message {
        let mut out = Vec::new();
        assert!(respond(zone, query, view, transport, &mut out));
        Message::from_vec(&out).unwrap()
    }

    #[test]
    fn a_response_echoes_id_question_and_rd_and_carries_the_split_answer() {
        let zone = zone(vec!["203.0.113.10".parse().unwrap()]);
        let query = query_bytes("ABC.blob.moat.internal.", RecordType::A, None);
        let response = ask(&zone, &query, Some("vnet-a"), Transport::Udp);
        let request = Message::from_vec(&query).unwrap();
        assert_eq!(response.metadata.id, request.metadata.id);
        assert_eq!(response.metadata.message_type, MessageType::Response);
        assert!(response.metadata.authoritative && response.metadata.recursion_desired && !response.metadata.recursion_available);
        assert_eq!(response.queries, request.queries);
        let data: Vec<_> = response.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(data, ["abc.privatelink.blob.moat.internal.", "10.0.0.4"]);
        assert!(response.edns.is_none());
    }

    #[test]
    fn edns_queries_get_an_opt_record_back() {
        let zone = zone(vec!["203.0.113.10".parse().unwrap()]);
        let response = ask(&zone, &query_bytes("abc.blob.moat.internal", RecordType::A, Some(4096)), None, Transport::Udp);
        assert_eq!(response.edns.as_ref().map(Edns::max_payload), Some(EDNS_UDP_PAYLOAD));
        assert_eq!(response.answers.len(), 2);
    }

    #[test]
    fn udp_responses_over_the_limit_are_truncated_and_tcp_ones_are_not() {
        // 60 AAAA records: about 1.7 KB, over 512 and over the EDNS limit.
        let public: Vec<IpAddr> = (1..=60u16).map(|i| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))).collect();
        let zone = zone(public);
        for edns in [None, Some(4096)] {
            let query = query_bytes("abc.blob.moat.internal", RecordType::AAAA, edns);
            let mut out = Vec::new();
            assert!(respond(&zone, &query, None, Transport::Udp, &mut out));
            assert!(out.len() <= usize::from(edns.map_or(512, |_| EDNS_UDP_PAYLOAD)));
            let response = Message::from_vec(&out).unwrap();
            assert!(response.metadata.truncation, "edns {edns:?}");
            assert!(response.answers.is_empty());
            assert_eq!(response.queries.len(), 1);
            let tcp = ask(&zone, &query, None, Transport::Tcp);
            assert!(!tcp.metadata.truncation);
            assert_eq!(tcp.answers.len(), 61);
        }
        // A small answer over UDP without EDNS is not truncated.
        let small = ask(&zone, &query_bytes("abc.blob.moat.internal", RecordType::A, None), None, Transport::Udp);
        assert!(!small.metadata.truncation);
    }

    #[test]
    fn malformed_packets_and_responses_get_nothing() {
        let zone = zone(vec![]);
        let mut out = Vec::new();
        for garbage in [&[][..], &[1, 2, 3], &[0u8; 12][..11], &[0xff; 40]] {
            assert!(!respond(&zone, garbage, None, Transport::Udp, &mut out), "{garbage:?}");
        }
        let mut response = Message::from_vec(&query_bytes("abc.blob.moat.internal", RecordType::A, None)).unwrap();
        response.metadata.message_type = MessageType::Response;
        assert!(!respond(&zone, &response.to_vec().unwrap(), None, Transport::Udp, &mut out));
    }

    #[test]
    fn unsupported_requests_get_an_error_rcode() {
        let zone = zone(vec![]);
        let mut notify = Message::from_vec(&query_bytes("moat.internal", RecordType::SOA, None)).unwrap();
        notify.metadata.op_code = OpCode::Notify;
        assert_eq!(ask(&zone, &notify.to_vec().unwrap(), None, Transport::Udp).metadata.response_code, ResponseCode::NotImp);

        let mut two = Message::from_vec(&query_bytes("moat.internal", RecordType::SOA, None)).unwrap();
        two.add_query(Query::query(Name::from_ascii("moat.internal").unwrap(), RecordType::NS));
        assert_eq!(ask(&zone, &two.to_vec().unwrap(), None, Transport::Udp).metadata.response_code, ResponseCode::FormErr);

        let mut none = Message::from_vec(&query_bytes("moat.internal", RecordType::SOA, None)).unwrap();
        none.queries.clear();
        assert_eq!(ask(&zone, &none.to_vec().unwrap(), None, Transport::Udp).metadata.response_code, ResponseCode::FormErr);

        let mut v1 = Message::from_vec(&query_bytes("moat.internal", RecordType::SOA, Some(1232))).unwrap();
        if let Some(edns) = v1.edns.as_mut() {
            edns.set_version(1);
        }
        let response = ask(&zone, &v1.to_vec().unwrap(), None, Transport::Udp);
        // BADVERS shares code 16 with BADSIG, which is how hickory decodes it.
        assert_eq!(u16::from(response.metadata.response_code), u16::from(ResponseCode::BADVERS));
        assert!(response.edns.is_some());
    }

    #[test]
    fn out_of_zone_is_refused_on_the_wire() {
        let zone = zone(vec![]);
        let response = ask(&zone, &query_bytes("example.com", RecordType::A, None), None, Transport::Tcp);
        assert_eq!(response.metadata.response_code, ResponseCode::Refused);
        assert!(!response.metadata.authoritative);
    }
}
