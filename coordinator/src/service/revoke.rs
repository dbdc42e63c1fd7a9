//! Revocation: an operator revokes an identity; every coordinator refuses it from then on.

use super::*;

impl Coordinator {
    /// Revokes the agent `agent` names (a name, of `role`, or a spiffe:// id). Audited.
    pub async fn revoke_agent(
        &self,
        operator: &SpiffeId,
        cmd: Cmd<(String, Option<Role>, String)>,
        trust_domain: &str,
    ) -> Result<Revoked> {
        let idem = self.idem(operator, "RevokeAgent", &cmd);
        let (agent, role, reason) = &cmd.body;
        let id = self.store.resolve_agent(agent, *role, trust_domain).await?;
        let r = self.store.revoke(&idem, operator, &id, reason, self.now()).await?;
        self.revoked.insert(&r.revocation.identity);
        tracing::warn!(operator = %operator, identity = %r.revocation.identity, %reason, released = ?r.released, "identity revoked");
        Ok(r)
    }

    pub async fn revocations(&self) -> Result<Vec<Revocation>> {
        self.store.revocations().await
    }

    /// Reads the revocations again (other coordinators may have made some).
    pub async fn refresh_revoked(&self) -> Result<()> {
        let all = self.store.revocations().await?;
        self.revoked.replace(all.into_iter().map(|r| r.identity));
        Ok(())
    }

    pub fn is_revoked(&self, identity: &str) -> bool {
        self.revoked.contains(identity)
    }
}
