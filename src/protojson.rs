//! The proto3 JSON mapping (the one grpcurl, buf curl and every gRPC gateway speak), driven by the
//! service's own descriptors: one source of truth for field names, enums and defaults, so the HTTP
//! API, the sample-data generator and the gRPC API can never disagree about what a message looks
//! like in JSON.

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use std::sync::LazyLock;

/// The descriptors of `ipledger.v1` and what it imports, and of the google.rpc error details.
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    let mut pool =
        DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).expect("the build embeds a valid descriptor set");
    pool.decode_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET).expect("tonic-types embeds a valid set");
    pool
});

/// Every descriptor the service is built from: the fuzzing harness generates requests of every
/// method of every service from it.
pub fn pool() -> &'static DescriptorPool {
    &POOL
}

/// The descriptor of a message of `ipledger.v1`, by its short name (`GetExposureRequest`).
pub fn descriptor(message: &str) -> MessageDescriptor {
    let full = format!("ipledger.v1.{message}");
    POOL.get_message_by_name(&full).unwrap_or_else(|| panic!("{full} is not in the descriptor set"))
}

/// `message` as one line of proto3 JSON (lowerCamelCase names, enums by name, defaults omitted).
pub fn to_json<M: Message>(name: &str, message: &M) -> String {
    let dynamic = DynamicMessage::decode(descriptor(name), message.encode_to_vec().as_slice())
        .expect("a message decodes as its own descriptor");
    let mut out = serde_json::Serializer::new(Vec::new());
    dynamic
        .serialize_with_options(&mut out, &SerializeOptions::new().skip_default_fields(true))
        .expect("serialising to memory cannot fail");
    String::from_utf8(out.into_inner()).expect("serde_json writes UTF-8")
}

/// An encoded message of any type the pool knows (an error detail such as `google.rpc.ErrorInfo`)
/// as a JSON value; `None` for a type it does not know or bytes that do not decode.
pub fn any_to_json(full_name: &str, bytes: &[u8]) -> Option<serde_json::Value> {
    let dynamic = DynamicMessage::decode(POOL.get_message_by_name(full_name)?, bytes).ok()?;
    dynamic.serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new()).ok()
}

/// Parses proto3 JSON into the message `name` (accepting lowerCamelCase and original field names,
/// as grpcurl does); unknown fields are refused, naming them.
pub fn from_json<M: Message + Default>(name: &str, json: &str) -> Result<M, String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let dynamic = DynamicMessage::deserialize(descriptor(name), &mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    M::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto as pb;

    #[test]
    fn round_trips_and_names_fields_as_grpcurl_does() {
        let request = pb::GetExposureRequest {
            region_code: "330000".into(),
            group_by: pb::ExposureGroupBy::ChildRegion as i32,
            ..Default::default()
        };
        let json = to_json("GetExposureRequest", &request);
        assert_eq!(json, r#"{"regionCode":"330000","groupBy":"CHILD_REGION"}"#);
        assert_eq!(from_json::<pb::GetExposureRequest>("GetExposureRequest", &json), Ok(request));
        assert_eq!(
            from_json::<pb::GetExposureRequest>("GetExposureRequest", r#"{"region_code":"1"}"#).unwrap().region_code,
            "1"
        );
        assert!(from_json::<pb::GetExposureRequest>("GetExposureRequest", r#"{"region":"1"}"#).is_err());
        assert!(from_json::<pb::GetExposureRequest>("GetExposureRequest", r#"{} x"#).is_err());
    }
}
