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

#[component]
fn StoredItem(message: StoredMessage) -> impl IntoView {
    view! {
        <li class="message" data-seq=message.seq.get() id=format!("m-{}", message.seq)>
            <div class="meta">
                <span class="name">{message.name.to_string()}</span>
                <time datetime=time::rfc3339(message.at_ms)>{time::clock(message.at_ms)}</time>
            </div>
            <p class="body">{message.body.to_string()}</p>
        </li>
    }
}

#[component]
fn PendingItem(pending: Pending) -> impl IntoView {
    view! {
        <li class="message pending" aria-busy="true">
            <div class="meta">
                <span class="name">{pending.name}</span>
                <span class="sending">"sending…"</span>
            </div>
            <p class="body">{pending.body}</p>
        </li>
    }
}
