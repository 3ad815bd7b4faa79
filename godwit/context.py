"""Request context: who asked, carried across every RPC hop."""

from oslo_context import context as oslo_context


class RequestContext(oslo_context.RequestContext):
    """oslo.context's context with Godwit's admin notion.

    ``is_admin`` comes from the roles the request arrived with (noauth2 makes
    the 'admin' user an admin; keystone passes the token's roles).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("is_admin", "admin" in (kwargs.get("roles") or []))
        super().__init__(*args, **kwargs)

    def to_dict(self):
        d = super().to_dict()
        d["is_admin"] = self.is_admin
        return d

    def to_saved_dict(self):
        """The context to keep in the database with a move or a drain (whoever
        acts on it later acts in the requester's name): without the token,
        which must not be stored and would have expired anyway."""
        d = self.to_dict()
        d.pop("auth_token", None)
        return d

    @classmethod
    def from_dict(cls, values, **kwargs):
        kwargs.setdefault("is_admin", values.get("is_admin", False))
        return super().from_dict(values, **kwargs)

    def elevated(self):
        ctx = self.__class__.from_dict(self.to_dict())
        ctx.is_admin = True
        if "admin" not in ctx.roles:
            ctx.roles = list(ctx.roles) + ["admin"]
        return ctx


def get_admin_context(request_id=None):
    kw = {"user_id": "godwit", "project_id": "godwit", "roles": ["admin"], "is_admin": True}
    if request_id:
        kw["request_id"] = request_id
    return RequestContext(**kw)
