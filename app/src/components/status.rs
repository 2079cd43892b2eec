//! The connection indicator.

use leptos::prelude::*;

/// The state of the page's live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Server-rendered and not (yet) taken over by the browser: what a
    /// visitor without JavaScript keeps seeing.
    Static,
    Connecting,
    Connected,
    /// The connection dropped; retrying.
    Reconnecting,
    /// Several attempts in a row failed; still retrying, less often.
    Offline,
}

impl ConnState {
    pub fn key(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Offline => "offline",
        }
    }

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
