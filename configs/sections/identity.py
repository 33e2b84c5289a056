"""Identity resolution and pseudonymisation."""

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

# Public: it is in this repository. Only the synthetic demo world may be hashed with it
# (features/salt_guard.py refuses anything else).
DEMO_SALT = "persona-demo-salt"


class IdentityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Salt of the customer-id hash. Set PERSONA_IDENTITY__SALT in production; the demo default is public.
    salt: SecretStr = SecretStr(DEMO_SALT)
    default_region: str = "CN"  # phone numbers without a country code are read as this region's

    @field_validator("salt")
    @classmethod
    def _not_empty(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 8:
            raise ValueError("salt must be at least 8 characters")
        return v
