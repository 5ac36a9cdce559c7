//! R2 as the share flow's store, and the reads the routes make.

use shared::{
    api::{ShareManifest, keys},
    publish::{Object, Store},
};
use worker::{Bucket, Env, HttpMetadata};

use crate::{
    error::{Fail, storage_unavailable},
    http::IMMUTABLE,
};

/// The `BUCKET` binding: results (copied from gpu-server) and shares.
pub struct R2(pub Bucket);

impl R2 {
    pub fn of(env: &Env) -> Result<R2, Fail> {
        env.bucket("BUCKET")
            .map(R2)
            .map_err(|e| Fail::Internal(format!("no R2 binding BUCKET: {e}")))
    }

    async fn read(&self, key: &str) -> worker::Result<Option<Vec<u8>>> {
        match self.0.get(key).execute().await? {
            Some(obj) => match obj.body() {
                Some(body) => Ok(Some(body.bytes().await?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// An object's bytes; an unreachable bucket is a 503.
    pub async fn object(&self, key: &str) -> Result<Option<Vec<u8>>, Fail> {
        self.read(key).await.map_err(storage_unavailable)
    }

    /// A share's manifest, if it exists and parses.
    pub async fn manifest(&self, id: &str) -> Result<Option<ShareManifest>, Fail> {
        Ok(self
            .object(&keys::manifest(id))
            .await?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }
}

impl Store for R2 {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.read(key).await.map_err(|e| e.to_string())
    }

    async fn put(&self, object: Object) -> Result<(), String> {
        self.0
            .put(&object.key, object.bytes)
            .http_metadata(HttpMetadata {
                content_type: Some(object.content_type.to_owned()),
                cache_control: object.immutable.then(|| IMMUTABLE.to_owned()),
                ..Default::default()
            })
            .execute()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
