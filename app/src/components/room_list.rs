//! The rooms a visitor may go to: those with people in them, those they
//! read (marked when newer messages came since), the lobby. Plain links:
//! they work without JavaScript.

use leptos::prelude::*;

use herald::room::RoomEntry;

#[component]
pub fn RoomList(rooms: Vec<RoomEntry>) -> impl IntoView {
    view! {
        <nav class="room-list" aria-label="Rooms" data-testid="room-list">
            {rooms
                .into_iter()
                .map(|entry| {
                    let name = entry.room.to_string();
                    let label = name.clone();
                    let people = entry.people;
                    let title = match (entry.private, people) {
                        (true, 0) => "Private room".to_owned(),
                        (true, n) => format!("Private room, {n} here"),
                        (false, 0) => "Nobody here now".to_owned(),
                        (false, n) => format!("{n} here"),
                    };
                    view! {
                        <a
                            href=entry.room.page_path()
                            class="room-link"
                            class:current=entry.current
                            class:unread=entry.unread
                            aria-current=entry.current.then_some("page")
                            data-room=name
                            title=title
                        >
                            {entry.private.then(|| view! { <span class="lock" aria-label="private">"🔒"</span> })}
                            "#"
                            {label}
                            {(people > 0).then(|| view! { <span class="people">{people}</span> })}
                            {entry
                                .unread
                                .then(|| {
                                    view! {
                                        <span class="unread-mark" data-testid="unread" title="New messages">
                                            "●"
                                        </span>
                                    }
                                })}
                        </a>
                    }
                })
                .collect_view()}
        </nav>
    }
    .into_any()
}
