//! The OpenAPI schemas of the validated scalars (feature `openapi`), written from the same
//! rules their constructors enforce, so the server's API contract states exactly what a
//! request may carry: a value the schema allows is one these types accept.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::types::{
    Cores, LeaseTtl, LicenseId, MAX_ID_LEN, MacAddr, NodeName, RequestId, Timestamp,
};

/// The identifier rule of `validate_id`: 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9._-]`.
fn identifier(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .pattern(Some("^[A-Za-z0-9._-]+$"))
        .description(Some(description))
        .into()
}

fn integer(description: &str, minimum: u64, maximum: Option<u64>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .minimum(Some(minimum as f64))
        .maximum(maximum.map(|m| m as f64))
        .description(Some(description))
        .into()
}

macro_rules! named {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

named!(
    NodeName,
    "NodeName",
    identifier("The name of an application server: 1 to 128 characters of [A-Za-z0-9._-].")
);
named!(
    LicenseId,
    "LicenseId",
    identifier("The identifier of a license: 1 to 128 characters of [A-Za-z0-9._-].")
);
named!(
    RequestId,
    "RequestId",
    identifier(
        "The id of one logical request; a retry carries the same id and is applied once. \
         1 to 128 characters of [A-Za-z0-9._-]."
    )
);
named!(
    MacAddr,
    "MacAddr",
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some(
            "^([0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5})$"
        ))
        .description(Some(
            "A MAC address, aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff in either case; answers \
             write it lower case with colons."
        ))
        .into()
);
named!(
    Cores,
    "Cores",
    integer(
        "The CPU cores of one application server.",
        1,
        Some(u64::from(Cores::MAX))
    )
);
named!(
    LeaseTtl,
    "LeaseTtl",
    integer(
        "A lease duration in milliseconds: 1 second to 7 days.",
        LeaseTtl::MIN_MS,
        Some(LeaseTtl::MAX_MS)
    )
);
named!(
    Timestamp,
    "Timestamp",
    integer(
        "Cluster calendar time: milliseconds since the Unix epoch (UTC).",
        0,
        None
    )
);

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: ToSchema>() -> serde_json::Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn the_schemas_state_the_constructors_rules() {
        let cores = json::<Cores>();
        assert_eq!(cores["minimum"], 1.0);
        assert_eq!(cores["maximum"], f64::from(Cores::MAX));
        assert!(Cores::new(Cores::MAX).is_ok() && Cores::new(Cores::MAX + 1).is_err());
        let ttl = json::<LeaseTtl>();
        assert_eq!(ttl["minimum"], LeaseTtl::MIN_MS as f64);
        assert_eq!(ttl["maximum"], LeaseTtl::MAX_MS as f64);
        let id = json::<NodeName>();
        assert_eq!(id["maxLength"], MAX_ID_LEN);
        assert_eq!(NodeName::name(), "NodeName");
    }
}
