//! The connection indicator.

use leptos::prelude::*;

use crate::signals::ConnState;

// What the indicator says; the state itself sits in `crate::signals`, where
// the live connection sets it.
impl ConnState {
    fn label(self) -> &'static str {
        match self {
            Self::Static => "Not live",
            Self::Connecting => "Connecting…",
            Self::Connected => "Live",
            Self::Reconnecting => "Reconnecting…",
            Self::Offline => "Offline",
        }
    }
}

#[component]
pub fn ConnStatus(state: ReadSignal<ConnState>) -> impl IntoView {
    view! {
        <span
            class="conn-status"
            data-testid="conn-status"
            data-state=move || state.get().key()
            role="status"
            aria-live="polite"
        >
            <span class="dot" aria-hidden="true"></span>
            {move || state.get().label()}
        </span>
    }
}
