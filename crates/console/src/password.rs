//! A user whose login profile says `PasswordResetRequired` must set a new
//! password before anything else, as AWS's console makes them: every page
//! sends them here until IAM's ChangePassword (called as them, through the
//! same dispatcher, so the password policy and the audit trail apply)
//! clears the flag.

use http::StatusCode;
use maud::html;

use crate::layout::{csrf_field, frame};
use crate::{Ctx, Page};

/// Where every page sends a user who must change their password.
pub const PATH: &str = "/console/password";

/// The change-password form (with the error of a refused attempt).
pub fn form(ctx: &Ctx<'_>, status: StatusCode, error: Option<&str>) -> Page {
    Page::html(
        status,
        frame(
            ctx,
            "Change password",
            html! {
                h1 { "Change password" }
                p { "Your administrator requires you to set a new password before you continue." }
                @if let Some(e) = error { div.error id="error" { p { (e) } } }
                form method="post" action=(PATH) id="change-password" {
                    (csrf_field(ctx))
                    label for="old-password" { "Current password" }
                    input type="password" id="old-password" name="old" autocomplete="current-password" required;
                    label for="new-password" { "New password" }
                    input type="password" id="new-password" name="new" autocomplete="new-password" required;
                    label for="confirm-password" { "Confirm new password" }
                    input type="password" id="confirm-password" name="confirm" autocomplete="new-password" required;
                    p { button.primary type="submit" id="change-password-submit" { "Confirm password change" } }
                }
            },
        ),
    )
}

/// ChangePassword as the signed-in user; on success, on to the console.
pub async fn change(ctx: &Ctx<'_>) -> Page {
    let (old, new) = (ctx.field("old"), ctx.field("new"));
    if new != ctx.field("confirm") {
        return form(
            ctx,
            StatusCode::BAD_REQUEST,
            Some("The new passwords do not match."),
        );
    }
    match ctx
        .call(
            "iam",
            "ChangePassword",
            &[("OldPassword", &old), ("NewPassword", &new)],
        )
        .await
    {
        Ok(_) => Page::redirect("/console/iam/roles"),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            form(ctx, status, Some(&format!("{}: {}", e.code, e.message)))
        }
    }
}
