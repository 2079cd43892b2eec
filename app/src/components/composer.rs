//! The message composer: a plain HTML form that posts to `/add_message`
//! without JavaScript, and sends over the live connection with it.

use herald::RoomName;
use herald::message::NAME_MAX_CHARS;
use leptos::prelude::*;

#[component]
pub fn Composer(
    room: RoomName,
    csrf_token: String,
    form_client_id: String,
    name: RwSignal<String>,
    draft: RwSignal<String>,
    error: RwSignal<Option<String>>,
    /// Called when the visitor sends (button or Enter) with JavaScript on.
    on_send: Callback<()>,
    /// Called when the visitor edits their name.
    on_rename: Callback<String>,
    /// Signed-in users chat under their token's name.
    name_locked: bool,
) -> impl IntoView {
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        on_send.run(());
    };
    let keydown = move |ev: leptos::ev::KeyboardEvent| {
        // Enter sends, Shift+Enter adds a line; never interrupt an IME.
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            on_send.run(());
        }
    };
    let initial_draft = draft.get_untracked();
    view! {
        <form id="composer" class="composer" method="post" action="/add_message" on:submit=submit>
            <input type="hidden" name="room" value=room.to_string() />
            <input type="hidden" name="csrf" value=csrf_token />
            <input type="hidden" name="client_id" value=form_client_id />
            <p class="form-error" data-testid="form-error" role="alert" hidden=move || error.with(Option::is_none)>
                {move || error.get()}
            </p>
            <div class="composer-row">
                <label class="name-field">
                    <span class="label">"Name"</span>
                    <input
                        name="name"
                        autocomplete="nickname"
                        maxlength=NAME_MAX_CHARS
                        readonly=name_locked
                        value=name.get_untracked()
                        prop:value=move || name.get()
                        on:input=move |ev| on_rename.run(event_target_value(&ev))
                    />
                </label>
                <textarea
                    name="body"
                    rows="1"
                    placeholder="Write a message…"
                    aria-label="Message"
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                    on:keydown=keydown
                >
                    {initial_draft}
                </textarea>
                <button type="submit">"Send"</button>
            </div>
        </form>
    }
}
