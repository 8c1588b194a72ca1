//! Interface facts asked of the driver (what sysfs does not show).

use napi::Env;

use crate::error::OrThrow;

/// The driver behind an interface (`ethtool -i`), or null when the device does not say.
#[napi(catch_unwind)]
pub fn interface_driver(env: &Env, name: String) -> napi::Result<Option<String>> {
    netring_engine::netdev::driver_name(&name).or_throw(env)
}
