//! The message list.

use herald::{StoredMessage, time};
use leptos::prelude::*;

use crate::timeline::{Pending, Timeline};

#[component]
pub fn MessageList(timeline: ReadSignal<Timeline>) -> impl IntoView {
    let stored = move || timeline.with(|t| t.stored().cloned().collect::<Vec<_>>());
    let pending = move || timeline.with(|t| t.pending().to_vec());
    view! {
        // The scroller is `column-reverse`, so it opens at the newest message
        // and stays there as messages arrive — with or without JavaScript.
        <section class="scroller" aria-label="Messages">
            <ol class="messages" data-testid="messages">
                <For each=stored key=|m| m.seq let:message>
                    <StoredItem message />
                </For>
                <For each=pending key=|p| p.client_id.clone() let:pending>
                    <PendingItem pending />
                </For>
            </ol>
        </section>
    }
}

/// A colour (one of 8 hues) and initial for a sender, derived from the name
/// alone so every client — and the server — draws the same avatar.
fn avatar(name: &str) -> (String, String) {
    let hash = name.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let initial = name.chars().next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    (format!("avatar hue-{}", hash % 8), initial)
}

/// One stored message. Its view is type-erased: the page's view type is
/// nested deep enough as it is for the compiler's query depth in release
/// builds.
#[component]
fn StoredItem(message: StoredMessage) -> impl IntoView {
    let (avatar_class, initial) = avatar(message.name.as_str());
    view! {
        <li
            class="message"
            class:system=message.system
            class:verified=message.verified
            data-seq=message.seq.get()
            id=format!("m-{}", message.seq)
        >
            <span class=avatar_class aria-hidden="true">{initial}</span>
            <div class="meta">
                <span class="name">{message.name.to_string()}</span>
                {message.verified.then(|| view! {
                    <span class="verified" data-testid="verified" title="Signed in: this name comes from their account">
                        "✓"
                        <span class="visually-hidden">" (signed in)"</span>
                    </span>
                })}
                <time datetime=time::rfc3339(message.at_ms)>{time::clock(message.at_ms)}</time>
            </div>
            <p class="body">{message.body.to_string()}</p>
        </li>
    }
    .into_any()
}

#[component]
fn PendingItem(pending: Pending) -> impl IntoView {
    view! {
        <li class="message pending" aria-busy="true">
            <span class="avatar" aria-hidden="true"></span>
            <div class="meta">
                <span class="name">{pending.name}</span>
                <span class="sending">"sending…"</span>
            </div>
            <p class="body">{pending.body}</p>
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::avatar;

    #[test]
    fn avatars_are_stable_per_name() {
        assert_eq!(avatar("ada"), avatar("ada"));
        assert_eq!(avatar("ada").1, "A");
        assert_eq!(avatar("élodie").1, "É");
        assert!(avatar("x").0.starts_with("avatar hue-"));
    }
}
