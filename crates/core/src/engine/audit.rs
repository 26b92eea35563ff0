//! Reading the audit log back (`GET /admin/audit`); the writing side is
//! [`crate::audit`], fed by every event the engine fires.

use regstack_ports::{AuditEntry, AuditQuery};

use super::{Engine, Principal};
use crate::error::AuthError;

impl Engine {
    /// `GET /admin/audit`: the entries `query` selects, in its order,
    /// strictly past its cursor. Administrators only.
    pub async fn admin_audit(
        &self,
        admin: &Principal,
        query: &AuditQuery,
    ) -> Result<Vec<AuditEntry>, AuthError> {
        Self::require_admin(admin)?;
        Ok(self.stores.audit.query(query).await?)
    }
}
