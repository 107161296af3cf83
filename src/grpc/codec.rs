//! The protobuf codec of every service: prost's, except that a request whose bytes do not decode as
//! the method's message is the caller's malformed request (INVALID_ARGUMENT with a field violation
//! and the ErrorInfo reason of the one status table), not an INTERNAL error. gRPC's own codec says
//! INTERNAL; the API's rule (malformed request: INVALID_ARGUMENT) is what clients branch on.
//!
//! The generated clients use this codec too; for them a response that does not decode is reported
//! the same way, which only a broken server can cause.

use crate::domain::LedgerError;
use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic_prost::ProstCodec;

#[derive(Debug, Clone)]
pub struct Codec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(ProstCodec::default())
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as tonic::codec::Codec>::Encoder;
    type Decoder = MalformedIsInvalid<<ProstCodec<T, U> as tonic::codec::Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        MalformedIsInvalid(self.0.decoder())
    }
}

/// Decodes with the inner decoder and reports a message that does not decode as INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct MalformedIsInvalid<D>(D);

impl<D: Decoder<Error = Status>> Decoder for MalformedIsInvalid<D> {
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        self.0.decode(buf).map_err(|status| {
            // prost names the message and field that failed (`RevokeTokenRequest.name: invalid wire
            // type`): the published schema's names, nothing internal.
            let description = format!("is not a valid protobuf message of the method's type: {}", status.message());
            super::status::to_status(LedgerError::invalid_field("", description))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
