//! Every frame header gets the verdict RFC 6455 5.2 (and RFC 7692 6 for RSV1) gives it,
//! computed here by a model written from the RFCs: reserved bits (RSV1 only on the first
//! frame of a data message, only with permessage-deflate) and opcodes, masking by
//! direction, control frames fragmented or over 125 bytes, non-minimal or out-of-range
//! lengths, a continuation with no message in progress, and the message limit (of the
//! compressed size, for a compressed message).

use proptest::prelude::*;
use ringcast_proto::deflate::max_compressed_len;
use ringcast_proto::{Decoder, ProtocolError, Role};

use crate::common::feed_whole;

/// How a header encodes its payload length.
#[derive(Debug, Clone, Copy)]
enum Length {
    /// In the 7-bit field (0..=125).
    Short(u8),
    /// 126 and a 16-bit length.
    Medium(u16),
    /// 127 and a 64-bit length.
    Long(u64),
}

/// Lengths in each encoding, often right at the edges of the rules.
fn length() -> impl Strategy<Value = Length> {
    let edges16 = prop_oneof![Just(0u16), Just(125), Just(126), Just(u16::MAX)];
    let edges64 = prop_oneof![
        Just(0u64),
        Just(125),
        Just(126),
        Just(0xffff),
        Just(0x1_0000),
        Just((1u64 << 63) - 1),
        Just(1u64 << 63),
        Just(u64::MAX),
    ];
    prop_oneof![
        (0u8..=125).prop_map(Length::Short),
        prop_oneof![edges16, 0u16..=130, any::<u16>()].prop_map(Length::Medium),
        prop_oneof![edges64, 0u64..=130, 0xfff0u64..=0x1_0010, any::<u64>()].prop_map(Length::Long),
    ]
}

/// A frame header as its fields.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    length: Length,
}

impl Header {
    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![
            u8::from(self.fin) << 7 | self.rsv << 4 | self.opcode,
            u8::from(self.masked) << 7,
        ];
        match self.length {
            Length::Short(n) => out[1] |= n,
            Length::Medium(n) => {
                out[1] |= 126;
                out.extend(n.to_be_bytes());
            }
            Length::Long(n) => {
                out[1] |= 127;
                out.extend(n.to_be_bytes());
            }
        }
        if self.masked {
            out.extend([1, 2, 3, 4]);
        }
        out
    }

    /// The verdict of RFC 6455 5.2 (and 5.4, 5.5) for this header as the first frame of
    /// a connection, or None if the frame is acceptable. When several rules are broken the
    /// decoder reports the first in this order.
    fn verdict(&self, role: Role, limit: usize, deflate: bool) -> Option<ProtocolError> {
        let rsv1 = self.rsv & 0b100 != 0;
        let rsv1_allowed = deflate && matches!(self.opcode, 1 | 2);
        if self.rsv & 0b011 != 0 || (rsv1 && !rsv1_allowed) {
            return Some(ProtocolError::ReservedBits);
        }
        if !matches!(self.opcode, 0..=2 | 8..=10) {
            return Some(ProtocolError::ReservedOpcode);
        }
        let len = match self.length {
            Length::Short(n) => u64::from(n),
            Length::Medium(n) if n <= 125 => return Some(ProtocolError::NonMinimalLength),
            Length::Medium(n) => u64::from(n),
            Length::Long(n) if n >> 63 != 0 => return Some(ProtocolError::LengthOverflow),
            Length::Long(n) if n <= 0xffff => return Some(ProtocolError::NonMinimalLength),
            Length::Long(n) => n,
        };
        match (role, self.masked) {
            (Role::Server, false) => return Some(ProtocolError::Unmasked),
            (Role::Client, true) => return Some(ProtocolError::Masked),
            _ => {}
        }
        if self.opcode >= 8 {
            if !self.fin {
                return Some(ProtocolError::FragmentedControl);
            }
            if len > 125 {
                return Some(ProtocolError::ControlTooLong);
            }
            return None;
        }
        if self.opcode == 0 {
            return Some(ProtocolError::UnexpectedContinuation);
        }
        let limit = if rsv1 {
            max_compressed_len(limit)
        } else {
            limit
        };
        (len > limit as u64).then_some(ProtocolError::TooBig)
    }
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<bool>(),
        prop_oneof![Just(0u8), Just(0b100), 0u8..8],
        prop_oneof![0u8..=2, 8u8..=10, 0u8..16],
        any::<bool>(),
        length(),
    )
        .prop_map(|(fin, rsv, opcode, masked, length)| Header {
            fin,
            rsv,
            opcode,
            masked,
            length,
        })
}

proptest! {
    #[test]
    fn every_header_gets_the_rfc_verdict(
        header in header(), server in any::<bool>(),
        limit in prop_oneof![0usize..300, Just(65_535), Just(65_536), Just(1 << 20)],
        deflate in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let bytes = header.bytes();
        let expected = header.verdict(role, limit, deflate);
        let mut decoder = Decoder::new(role, limit);
        if deflate {
            decoder.enable_deflate();
        }
        // The header alone: a valid one with an empty payload is a complete frame (always
        // acceptable: empty text, binary, close or compressed payloads are valid), else it
        // waits for the payload.
        let (_, result) = feed_whole(&mut decoder, &bytes);
        prop_assert_eq!(result.err(), expected);
    }
}
