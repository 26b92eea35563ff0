//! Account deletion: every row of the user goes in one store step
//! (`UserStore::delete_account`).

use secrecy::SecretString;

use super::{ClientContext, Engine, Principal};
use crate::error::AuthError;
use crate::events::EventKind;

impl Engine {
    /// `DELETE /account`: removes every row of the user.
    pub async fn delete_account(
        &self,
        p: &Principal,
        current: &SecretString,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if !self.cfg.enable_account_deletion {
            return Err(AuthError::AccountDeletionDisabled);
        }
        self.require_current_password(&p.user, current).await?;
        if let Some(user) = self.stores.users.delete_account(&p.user.id).await? {
            self.emit_for(EventKind::UserDeleted, &user, client);
        }
        Ok(())
    }
}
