"""The console (issue 13) in a real browser: the distribution's Chromium,
headless, driven by selenium. Seed 002's flows end to end: sign-in, the
create-role wizard, Actions -> Security -> Modify IAM role, the role's
credentials inside ``keycard exec`` on that instance, detaching a policy
and the instance's AccessDenied; plus denials, XSS and CSRF.

Screenshots go to $KEYCARD_ARTIFACTS (default target/console-shots)."""

import base64
import hashlib
import hmac
import os
import shutil
import struct
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import ACCOUNT, IAM_READ_ONLY, raw_http, unique

PASSWORD = "Good-Pass-123"
SHOTS = Path(os.environ.get("KEYCARD_ARTIFACTS", "target/console-shots"))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: required, not skipping)", pytrace=False)
    pytest.skip(reason)


DETACHED = "does not belong to the document"


def detached_is_stale(d):
    """Chromium 148's driver reports an element whose page has gone (a
    navigation or an htmx swap) as an "unknown error: ... Node with given id
    does not belong to the document" instead of a stale element reference.
    Map it back, so selenium's waits (staleness_of, ignored exceptions) see
    what they were written for."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    check = d.error_handler.check_response

    def check_response(response):
        try:
            check(response)
        except WebDriverException as e:
            if DETACHED in (e.msg or "") and not isinstance(e, StaleElementReferenceException):
                raise StaleElementReferenceException(e.msg, e.screen, e.stacktrace) from e
            raise

    d.error_handler.check_response = check_response


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (scripts/e2e.sh installs it)")
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        _unavailable("chromium / chromium-driver are not installed (scripts/e2e.sh installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(a)
    d = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    detached_is_stale(d)
    d.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield d
    d.quit()


@pytest.fixture
def b(browser, keycard):
    """The browser, signed out (no cookies for the console)."""
    browser.get(keycard.endpoint + "/console/signin")
    browser.delete_all_cookies()
    return browser


def by(sel):
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, sel


def el(d, sel):
    """The element, once the page has it (waits for a navigation to land)."""
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, 15).until(EC.presence_of_element_located(by(sel)))


def click(d, sel):
    """Click something that navigates, and wait until the next page replaced this one."""
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.common.exceptions import WebDriverException

    old = d.find_element(*by("html"))
    for attempt in range(3):
        try:
            el(d, sel).click()
            break
        except WebDriverException:
            # The clicked node can be reported detached because the click
            # already navigated: that is success.
            if EC.staleness_of(old)(d):
                break
            if attempt == 2:
                raise
    WebDriverWait(d, 15).until(EC.staleness_of(old))


def shot(d, name):
    d.save_screenshot(str(SHOTS / f"{name}.png"))


def text(d, sel) -> str:
    return el(d, sel).text


def fill(d, values: dict):
    for sel, v in values.items():
        e = el(d, sel)
        e.clear()
        e.send_keys(v)


def sign_in(d, kc, user, password, mfa=""):
    d.get(kc.endpoint + "/console/signin")
    fill(d, {"#account": ACCOUNT, "#username": user, "#password": password, "#mfa": mfa})
    click(d, "#signin-submit")


def sign_in_root(d, kc):
    d.get(kc.endpoint + "/console/signin")
    fill(
        d,
        {
            "#root-account": ACCOUNT,
            "#root-key": kc.root_creds["AccessKeyId"],
            "#root-secret": kc.root_creds["SecretAccessKey"],
        },
    )
    click(d, "#root-signin-submit")
    assert "root @ " + ACCOUNT in text(d, "#signed-in-as")


def console_user(kc, managed=(), policy=None):
    iam = kc.client("iam")
    name = unique("cons")
    kc.new_user(name=name, managed=managed, policy=policy)
    iam.create_login_profile(UserName=name, Password=PASSWORD)
    return name


def totp(seed_b32: bytes, step: int) -> str:
    key = base64.b32decode(seed_b32 + b"=" * (-len(seed_b32) % 8))
    h = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    off = h[-1] & 0x0F
    return f"{(struct.unpack('>I', h[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def events(kc, want, **attr):
    """LookupEvents until `want(events)` holds (the trail commits before
    the call answers, so this is immediate; the loop only bounds it)."""
    ct = kc.client("cloudtrail")
    deadline = time.monotonic() + 10
    while True:
        k, v = next(iter(attr.items()))
        evs = ct.lookup_events(LookupAttributes=[{"AttributeKey": k, "AttributeValue": v}], MaxResults=50)["Events"]
        if want(evs) or time.monotonic() > deadline:
            return evs
        time.sleep(0.1)


HTMX = "/console/assets/htmx-2.0.4.min.js"


def foreign_scripts(d):
    """Script elements other than the vendored htmx (there must be none).
    Read again when the page replaces a node mid-read (an htmx swap)."""
    from selenium.common.exceptions import StaleElementReferenceException

    for attempt in range(3):
        try:
            return [e.get_attribute("outerHTML") for e in d.find_elements(*by("script"))
                    if not (e.get_attribute("src") or "").endswith(HTMX)]
        except StaleElementReferenceException:
            if attempt == 2:
                raise
            time.sleep(0.3)


def wait_for(d, sel, timeout=15):
    """An element that appears without a navigation (htmx swaps)."""
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, timeout).until(EC.visibility_of_element_located(by(sel)))


def session_cookie(d) -> str:
    c = d.get_cookie("keycard_console")
    assert c, "no session cookie"
    return c["value"]


def post(kc, path, form: dict, cookie=None):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["Cookie"] = f"keycard_console={cookie}"
    return raw_http("POST", kc.endpoint + path, body=urllib.parse.urlencode(form).encode(), headers=headers)


# ------------------------------------------------------------------ sign-in


def test_sign_in_wrong_password_then_good_and_audited(b, keycard):
    import json

    name = console_user(keycard, managed=[IAM_READ_ONLY])
    sign_in(b, keycard, name, "Wrong-Pass-999")
    assert "authentication information is incorrect" in text(b, "#signin-error")
    assert b.get_cookie("keycard_console") is None
    shot(b, "signin-wrong-password")
    # An unknown user gets the same words.
    sign_in(b, keycard, unique("ghost"), PASSWORD)
    assert "authentication information is incorrect" in text(b, "#signin-error")

    sign_in(b, keycard, name, PASSWORD)
    assert name in text(b, "#signed-in-as")
    assert b.find_element(*by("#roles"))
    cookie = b.get_cookie("keycard_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    shot(b, "roles-list")

    logins = events(keycard, lambda e: len(e) >= 2, Username=name)
    outcome = {}
    for e in logins:
        ct = json.loads(e["CloudTrailEvent"])
        if ct["eventName"] == "ConsoleLogin":
            outcome[ct["responseElements"]["ConsoleLogin"]] = ct
    assert set(outcome) == {"Success", "Failure"}, logins
    assert outcome["Failure"]["errorMessage"] == "Failed authentication"
    assert outcome["Success"]["eventSource"] == "signin.amazonaws.com"
    # The page's ListRoles went through the API: same audit trail, with
    # the console's user agent and the session's context.
    lists = events(keycard, lambda e: any(x["EventName"] == "ListRoles" for x in e), Username=name)
    ev = [json.loads(x["CloudTrailEvent"]) for x in lists if x["EventName"] == "ListRoles"][0]
    assert ev["userAgent"].startswith("keycard-console/")
    assert ev["userIdentity"]["type"] == "IAMUser"
    assert "sessionContext" in ev["userIdentity"]
    assert ev["userIdentity"]["accessKeyId"].startswith("ASIA")


def test_mfa_user_needs_the_code(b, keycard):
    iam = keycard.client("iam")
    name = console_user(keycard, managed=[IAM_READ_ONLY])
    dev = iam.create_virtual_mfa_device(VirtualMFADeviceName=unique("mfa"))["VirtualMFADevice"]
    seed = dev["Base32StringSeed"]
    s = int(time.time()) // 30
    iam.enable_mfa_device(
        UserName=name, SerialNumber=dev["SerialNumber"], AuthenticationCode1=totp(seed, s - 1), AuthenticationCode2=totp(seed, s)
    )
    sign_in(b, keycard, name, PASSWORD)
    assert "MFA device" in text(b, "#signin-error")
    assert b.get_cookie("keycard_console") is None
    sign_in(b, keycard, name, PASSWORD, mfa="000000" if totp(seed, s + 1) != "000000" else "111111")
    assert "incorrect" in text(b, "#signin-error")
    sign_in(b, keycard, name, PASSWORD, mfa=totp(seed, int(time.time()) // 30 + 1))
    assert name in text(b, "#signed-in-as")
    # The console session proved MFA: its calls say so.
    import json

    evs = events(keycard, lambda e: any(x["EventName"] == "ListRoles" for x in e), Username=name)
    ev = [json.loads(x["CloudTrailEvent"]) for x in evs if x["EventName"] == "ListRoles"][0]
    assert ev["userIdentity"]["sessionContext"]["attributes"]["mfaAuthenticated"] == "true"


def test_root_sign_in_and_sign_out_ends_the_session(b, keycard):
    sign_in_root(b, keycard)
    sid = session_cookie(b)
    status, _, _ = raw_http("GET", keycard.endpoint + "/console/iam/roles", headers={"Cookie": f"keycard_console={sid}"})
    assert status == 200
    click(b, "#signout")
    assert b.find_element(*by("#user-signin"))
    # The old cookie names nothing any more.
    status, h, _ = raw_http("GET", keycard.endpoint + "/console/iam/roles", headers={"Cookie": f"keycard_console={sid}"})
    assert status == 303 and h["location"] == "/console/signin"


# --------------------------------------------------------- seed 002 in the console


def test_seed_002_create_role_attach_to_instance_then_detach(b, keycard):
    from selenium.webdriver.support.ui import Select

    inst = keycard.run_instance()["InstanceId"]
    # Before: no role, no credentials on the instance.
    before = keycard.exec_aws(inst, "sts", "get-caller-identity", check=False)
    assert before.returncode != 0

    sign_in_root(b, keycard)
    role = unique("DemoRoleForEC2")
    b.get(keycard.endpoint + "/console/iam/roles")
    click(b, "#create-role")
    Select(b.find_element(*by("#use-case"))).select_by_visible_text("EC2")
    shot(b, "create-role-1-trusted-entity")
    click(b, "#wizard-next-1")
    el(b, "#policy-IAMReadOnlyAccess").click()
    click(b, "#wizard-next-2")
    fill(b, {"#role-name-input": role})
    shot(b, "create-role-3-review")
    click(b, "#create-role-submit")
    assert text(b, "#role-name") == role
    assert "IAMReadOnlyAccess" in text(b, "#attached-policies")
    assert role in text(b, "#instance-profiles")
    assert "ec2.amazonaws.com" in text(b, "#trust-policy")
    shot(b, "role-detail")

    b.get(keycard.endpoint + "/console/ec2/instances")
    click(b, f"a[href='/console/ec2/instances/{inst}']")
    el(b, "#actions summary").click()
    click(b, "#modify-iam-role")
    assert text(b, "#current-role") == "none"
    Select(b.find_element(*by("#profile"))).select_by_visible_text(role)
    shot(b, "modify-iam-role")
    click(b, "#update-iam-role")
    assert "Successfully updated" in text(b, "#flash")
    assert text(b, "#iam-role") == role
    shot(b, "instance-security")

    ident = keycard.exec_aws(inst, "sts", "get-caller-identity")
    assert f":assumed-role/{role}/{inst}" in ident["Arn"]
    keycard.exec_aws(inst, "iam", "list-users")

    # Detach the policy on the role's page: the instance loses the permission.
    b.get(keycard.endpoint + f"/console/iam/roles/{role}")
    click(b, "button[data-policy='IAMReadOnlyAccess']")
    assert "Detached" in text(b, "#flash")
    assert "IAMReadOnlyAccess" not in text(b, "#attached-policies")
    denied = keycard.exec_aws(inst, "iam", "list-users", check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr

    # Replacing the association goes through the same form.
    other = unique("OtherRole")
    keycard.instance_profile(name=other)
    b.get(keycard.endpoint + f"/console/ec2/instances/{inst}/modify-iam-role")
    assert text(b, "#current-role") == role
    Select(b.find_element(*by("#profile"))).select_by_visible_text(other)
    click(b, "#update-iam-role")
    assert text(b, "#iam-role") == other
    assocs = keycard.client("ec2").describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [inst]}]
    )["IamInstanceProfileAssociations"]
    assert [a["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1] for a in assocs if a["State"] == "associated"] == [other]


# ------------------------------------------------------------------ denials


def test_user_without_permissions_sees_the_denial(b, keycard):
    name = console_user(keycard)
    sign_in(b, keycard, name, PASSWORD)
    msg = text(b, "#denial-message")
    assert f"arn:aws:iam::{ACCOUNT}:user/{name}" in msg
    assert "iam:ListRoles" in msg
    assert b.find_elements(*by("#roles")) == []
    shot(b, "access-denied")
    b.get(keycard.endpoint + "/console/ec2/instances")
    assert "ec2:DescribeInstances" in text(b, "#denial-message")
    for path, action in (
        ("/console/iam/policies", "iam:ListPolicies"),
        ("/console/iam/groups", "iam:ListGroups"),
        ("/console/iam/instance-profiles", "iam:ListInstanceProfiles"),
        ("/console/s3", "s3:ListAllMyBuckets"),
    ):
        b.get(keycard.endpoint + path)
        assert b.find_elements(*by("#access-denied")), path
        assert action in text(b, "#denial-message") or "Access Denied" in text(b, "#denial-message"), path
    # The editor's live check is the caller's ValidatePolicy: refused too.
    b.get(keycard.endpoint + "/console/iam/policies/create")
    set_editor(b, GOOD_POLICY)
    assert "AccessDenied" in wait_for(b, "#validation-refused").text


# ------------------------------------------------------------------ XSS / CSRF


def test_hostile_names_render_escaped_and_csp_forbids_inline_script(b, keycard):
    iam = keycard.client("iam")
    hostile = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
    role = unique("xss")
    keycard.new_role(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
        name=role,
        Description="<script>alert(2)</script>",
        Tags=[{"Key": "owner", "Value": hostile}],
    )
    keycard.run_instance(TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": hostile}]}])
    sign_in_root(b, keycard)
    for path in (f"/console/iam/roles/{role}", "/console/ec2/instances"):
        b.get(keycard.endpoint + path)
        assert "pwned" not in b.title
        assert foreign_scripts(b) == []
        assert b.find_elements(*by("img")) == []
        assert "&lt;script&gt;" in b.page_source, b.page_source[-3000:]
    assert hostile in text(b, "#instances")
    iam.delete_role(RoleName=role)
    status, h, _ = raw_http("GET", keycard.endpoint + "/console/signin")
    assert status == 200
    assert "script-src 'self'" in h["content-security-policy"]
    assert "unsafe-inline" not in h["content-security-policy"]
    assert h["x-frame-options"] == "DENY"


def test_csrf_missing_or_wrong_token_is_refused_and_changes_nothing(b, keycard):
    iam = keycard.client("iam")
    role, _ = keycard.instance_profile(managed=[IAM_READ_ONLY])
    name = role["RoleName"]
    sign_in_root(b, keycard)
    sid = session_cookie(b)
    path = f"/console/iam/roles/{name}/detach"
    for form in ({"policy_arn": IAM_READ_ONLY}, {"policy_arn": IAM_READ_ONLY, "csrf": "0" * 64}):
        status, _, body = post(keycard, path, form, cookie=sid)
        assert status == 403, body
        assert b"security token" in body
    attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [IAM_READ_ONLY]
    # Sign-in needs its token too.
    status, _, _ = post(keycard, "/console/signin", {"kind": "root", "account": ACCOUNT})
    assert status == 403
    # No session, no action: the form is answered with the sign-in page.
    status, h, _ = post(keycard, path, {"policy_arn": IAM_READ_ONLY})
    assert status == 303 and h["location"] == "/console/signin"
    assert len(iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]) == 1
    # Only GET and POST: other methods change nothing either.
    status, _, _ = raw_http("DELETE", keycard.endpoint + path, headers={"Cookie": f"keycard_console={sid}"})
    assert status == 405


# ------------------------------------------------------------ history, users, timeouts


def test_event_history_explains_the_denial(b, keycard):
    name = console_user(keycard)
    sign_in(b, keycard, name, PASSWORD)
    assert b.find_elements(*by("#access-denied"))
    b.delete_all_cookies()
    sign_in_root(b, keycard)
    click(b, "a[href='/console/events']")
    fill(b, {"#filter-value": name})
    from selenium.webdriver.support.ui import Select

    Select(el(b, "#filter-key")).select_by_visible_text("Username")
    el(b, "#errors-only").click()
    click(b, "#filter-submit")
    row = el(b, "tr.event[data-event='ListRoles']")
    assert "AccessDenied" in row.text and "keycard-console/" in row.text
    el(b, "tr.why[data-event='ListRoles'] details.why summary").click()
    why = text(b, "tr.why[data-event='ListRoles'] details.why")
    assert "iam:ListRoles" in why and "no identity-based policy allows" in why
    shot(b, "event-history-denial")
    # Errors only: the successful ConsoleLogin is filtered out.
    assert not b.find_elements(*by("tr.event[data-event='ConsoleLogin']"))


def test_event_history_pages_and_time_range(b, keycard):
    """More than a page of events: "Older events" follows LookupEvents'
    NextToken with the filter kept, each event shown once; a time range
    that ends before the calls shows none of them."""
    user, creds = keycard.new_user(name=unique("pager"))
    sts = keycard.client("sts", creds=creds)
    for _ in range(60):
        sts.get_caller_identity()
    events(keycard, lambda e: len(e) >= 50, Username=user["UserName"])
    sign_in_root(b, keycard)
    from selenium.webdriver.support.ui import Select

    b.get(keycard.endpoint + "/console/events")
    Select(el(b, "#filter-key")).select_by_visible_text("Username")
    fill(b, {"#filter-value": user["UserName"]})
    click(b, "#filter-submit")

    def ids():
        return [r.get_attribute("data-event") for r in b.find_elements(*by("tr.event"))]

    first = ids()
    assert len(first) == 50 and set(first) == {"GetCallerIdentity"}
    click(b, "#older-events")
    second = ids()
    assert el(b, "#filter-value").get_attribute("value") == user["UserName"]
    assert 10 <= len(second) < 50 and set(second) == {"GetCallerIdentity"}
    assert not b.find_elements(*by("#older-events")), "the last page has no further link"
    shot(b, "event-history-older")
    b.get(keycard.endpoint + "/console/events?key=Username&value=" + user["UserName"] + "&to=2020-01-01T00:00")
    assert ids() == []


def test_password_reset_required_comes_first(b, keycard):
    """A user whose login profile requires a reset sees only the change
    form until IAM ChangePassword (as them) succeeds; then the flag is
    clear and the new password signs in."""
    iam = keycard.client("iam")
    name = unique("reset")
    keycard.new_user(name=name, managed=["arn:aws:iam::aws:policy/IAMReadOnlyAccess"])
    iam.create_login_profile(UserName=name, Password=PASSWORD, PasswordResetRequired=True)
    sign_in(b, keycard, name, PASSWORD)
    el(b, "#change-password")
    b.get(keycard.endpoint + "/console/iam/users")
    assert b.current_url.endswith("/console/password"), "every page leads to the change form first"
    fill(b, {"#old-password": PASSWORD, "#new-password": "New-Pass-456", "#confirm-password": "Other-Pass-789"})
    click(b, "#change-password-submit")
    assert "do not match" in text(b, "#error")
    fill(b, {"#old-password": "wrong-Pass-1", "#new-password": "New-Pass-456", "#confirm-password": "New-Pass-456"})
    click(b, "#change-password-submit")
    assert text(b, "#error"), "a wrong current password is refused"
    assert iam.get_login_profile(UserName=name)["LoginProfile"]["PasswordResetRequired"] is True
    shot(b, "password-reset-required")
    fill(b, {"#old-password": PASSWORD, "#new-password": "New-Pass-456", "#confirm-password": "New-Pass-456"})
    click(b, "#change-password-submit")
    el(b, "#roles")
    assert iam.get_login_profile(UserName=name)["LoginProfile"]["PasswordResetRequired"] is False
    changed = events(keycard, lambda e: any(x["EventName"] == "ChangePassword" for x in e), Username=name)
    assert [e for e in changed if e["EventName"] == "ChangePassword"]
    b.delete_all_cookies()
    sign_in(b, keycard, name, "New-Pass-456")
    el(b, "#roles")


def test_users_page_shows_keys_and_last_use(b, keycard):
    user, creds = keycard.new_user(name=unique("keys"))
    keycard.client("sts", creds=creds).get_caller_identity()
    sign_in_root(b, keycard)
    b.get(keycard.endpoint + "/console/iam/users")
    row = [r for r in b.find_elements(*by("#users tbody tr")) if r.text.startswith(user["UserName"])]
    assert row and creds["AccessKeyId"] in row[0].text and "Active" in row[0].text
    assert "last used never" not in row[0].text


def advance_clock(kc, seconds):
    import json

    token = (kc.data_dir / "admin.token").read_text().strip()
    status, _, out = raw_http(
        "POST",
        kc.endpoint + "/_keycard/admin/clock",
        body=json.dumps({"advanceSeconds": seconds}).encode(),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 200, out


def test_idle_timeout_ends_the_session(browser, make_keycard):
    kc = make_keycard("--test-clock")
    browser.get(kc.endpoint + "/console/signin")
    browser.delete_all_cookies()
    sign_in_root(browser, kc)
    advance_clock(kc, 16 * 60)
    browser.get(kc.endpoint + "/console/iam/roles")
    assert browser.find_elements(*by("#user-signin"))


def test_repeated_failures_lock_the_user_out_for_a_while(browser, make_keycard):
    import json

    kc = make_keycard("--test-clock")
    browser.get(kc.endpoint + "/console/signin")
    browser.delete_all_cookies()
    name = console_user(kc, managed=[IAM_READ_ONLY])
    other = console_user(kc, managed=[IAM_READ_ONLY])
    for _ in range(5):
        sign_in(browser, kc, name, "Wrong-Pass-999")
        assert "incorrect" in text(browser, "#signin-error")
    # Locked: the right password is refused with the same words, and audited.
    sign_in(browser, kc, name, PASSWORD)
    assert "incorrect" in text(browser, "#signin-error")
    assert browser.get_cookie("keycard_console") is None
    fails = events(kc, lambda e: len(e) >= 6, Username=name)
    outcomes = [json.loads(e["CloudTrailEvent"])["responseElements"]["ConsoleLogin"] for e in fails]
    assert outcomes.count("Failure") == 6 and "Success" not in outcomes
    # Another user is not affected; after the window the user signs in.
    sign_in(browser, kc, other, PASSWORD)
    assert other in text(browser, "#signed-in-as")
    browser.delete_all_cookies()
    advance_clock(kc, 16 * 60)
    sign_in(browser, kc, name, PASSWORD)
    assert name in text(browser, "#signed-in-as")


# ------------------------------------------------------------------ policies (htmx editor)

BAD_POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allw", "Action": "s3:GetObject", "Resource": "*"}]}'
GOOD_POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]}'


def set_editor(d, text_):
    e = el(d, "#policy-document-input")
    e.clear()
    e.send_keys(text_)


def test_policy_editor_lints_as_you_type_and_creates_a_good_policy(b, keycard):
    iam = keycard.client("iam")
    sign_in_root(b, keycard)
    b.get(keycard.endpoint + "/console/iam/policies")
    click(b, "#create-policy")
    # The vendored htmx is served from the binary, cached for a year.
    status, h, body = raw_http("GET", keycard.endpoint + HTMX)
    assert status == 200 and "immutable" in h["cache-control"] and hashlib.sha256(body).hexdigest() == (
        "e209dda5c8235479f3166defc7750e1dbcd5a5c1808b7792fc2e6733768fb447"
    )
    # Typing posts the text to ValidatePolicy (htmx) and swaps in the findings.
    set_editor(b, BAD_POLICY)
    row = wait_for(b, "#policy-findings tr.finding[data-issue='INVALID_EFFECT']")
    assert "ERROR" in row.text
    shot(b, "policy-editor-finding")
    set_editor(b, GOOD_POLICY)
    wait_for(b, "#no-findings")
    name = unique("ConsolePolicy")
    hostile = "<script>document.title='pwned'</script>"
    fill(b, {"#policy-name-input": name, "#policy-description-input": hostile})
    click(b, "#create-policy-submit")
    assert text(b, "#policy-name") == name and "Policy created" in text(b, "#flash")
    assert text(b, "#policy-description") == hostile and "pwned" not in b.title
    assert foreign_scripts(b) == []
    assert "s3:ListAllMyBuckets" in text(b, "#policy-document")
    arn = text(b, "#policy-arn")
    assert iam.get_policy(PolicyArn=arn)["Policy"]["Description"] == hostile
    shot(b, "policy-detail")
    # A new version, and the list filtered to customer managed policies.
    click(b, "#new-version")
    click(b, "#create-policy-submit")
    assert text(b, "#default-version") == "v2"
    b.get(keycard.endpoint + "/console/iam/policies?scope=Local")
    assert name in text(b, "#policies") and "IAMReadOnlyAccess" not in text(b, "#policies")
    b.get(keycard.endpoint + "/console/iam/policies?scope=AWS")
    assert "IAMReadOnlyAccess" in text(b, "#policies") and name not in text(b, "#policies")


def test_policy_editor_without_javascript_shows_findings_and_refuses_errors(b, keycard):
    iam = keycard.client("iam")
    sign_in_root(b, keycard)
    sid = session_cookie(b)
    b.get(keycard.endpoint + "/console/iam/policies/create")
    csrf = el(b, "#policy-editor input[name=csrf]").get_attribute("value")
    name = unique("NoJsPolicy")
    # The "Validate" button's plain POST: the whole page, findings on it.
    status, _, body = post(keycard, "/console/iam/policies/validate", {"csrf": csrf, "name": name, "document": BAD_POLICY}, cookie=sid)
    assert status == 200 and b"INVALID_EFFECT" in body and b'id="policy-editor"' in body
    # Saving a document with errors is refused with the findings; nothing is created.
    status, _, body = post(keycard, "/console/iam/policies/create", {"csrf": csrf, "name": name, "document": BAD_POLICY}, cookie=sid)
    assert status == 400 and b"INVALID_EFFECT" in body
    assert name not in [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]]


# ------------------------------------------------------------------ groups, profiles, simulator


def test_groups_instance_profiles_and_the_simulator(b, keycard):
    iam = keycard.client("iam")
    user, _ = keycard.new_user(name=unique("member"), managed=[IAM_READ_ONLY])
    role, _ = keycard.instance_profile(name=unique("ProfRole"))
    sign_in_root(b, keycard)
    b.get(keycard.endpoint + "/console/iam/groups")
    group = unique("Console-Group")
    fill(b, {"#group-name-input": group})
    click(b, "#create-group-submit")
    assert text(b, "#group-name") == group
    from selenium.webdriver.support.ui import Select

    Select(el(b, "#add-user-select")).select_by_visible_text(user["UserName"])
    click(b, "#add-user-submit")
    assert user["UserName"] in text(b, "#group-members")
    assert [u["UserName"] for u in iam.get_group(GroupName=group)["Users"]] == [user["UserName"]]
    shot(b, "group-detail")
    b.get(keycard.endpoint + "/console/iam/instance-profiles")
    row = el(b, f"tr[data-profile='{role['RoleName']}']")
    assert role["RoleName"] in row.text.split("\n")[0] and row.find_elements(*by(f"a[href='/console/iam/roles/{role['RoleName']}']"))
    q = urllib.parse.urlencode({"principal": user["Arn"], "actions": "iam:ListUsers s3:GetObject"})
    b.get(keycard.endpoint + "/console/iam/simulator?" + q)
    assert text(b, "tr[data-action='iam:ListUsers'] td.decision") == "allowed"
    assert text(b, "tr[data-action='s3:GetObject'] td.decision") == "implicitDeny"
    shot(b, "policy-simulator")


# ------------------------------------------------------------------ EC2 launch, metadata, credentials


def test_launch_with_profile_and_imdsv2_required_then_v1_is_refused(b, keycard):
    from selenium.webdriver.support.ui import Select

    role, _ = keycard.instance_profile(managed=[IAM_READ_ONLY], name=unique("LaunchRole"))
    sign_in_root(b, keycard)
    b.get(keycard.endpoint + "/console/ec2/instances")
    click(b, "#launch-instance")
    fill(b, {"#launch-name": "console-<b>web</b>", "#hop-limit": "2"})
    Select(el(b, "#launch-profile")).select_by_visible_text(role["RoleName"])
    Select(el(b, "#http-tokens")).select_by_value("required")
    shot(b, "launch-instance")
    click(b, "#launch-submit")
    assert "launched" in text(b, "#flash")
    assert text(b, "#http-tokens-value") == "required" and text(b, "#hop-limit-value") == "2"
    assert text(b, "#iam-role") == role["RoleName"]
    assert "Not delivered" in text(b, "#credentials-status")
    inst = b.current_url.split("/console/ec2/instances/")[1].split("?")[0]
    described = keycard.client("ec2").describe_instances(InstanceIds=[inst])["Reservations"][0]["Instances"][0]
    assert described["MetadataOptions"]["HttpTokens"] == "required"
    assert described["IamInstanceProfile"]["Arn"].endswith("/" + role["RoleName"])
    creds_path = f"/latest/meta-data/iam/security-credentials/{role['RoleName']}"
    status, _, _ = keycard.imds(inst, creds_path)
    assert status == 401
    tok = keycard.imds_token(inst)
    status, _, body = keycard.imds(inst, creds_path, token=tok)
    assert status == 200
    import json

    key = json.loads(body)["AccessKeyId"]
    b.refresh()
    row = el(b, "#credentials-status tr[data-delivery='ImdsV2']")
    assert key in row.text and "IMDSv2" in row.text
    assert not b.find_elements(*by("#credentials-status tr[data-delivery='ImdsV1']"))
    b.execute_script("arguments[0].scrollIntoView()", el(b, "#credentials-status"))
    shot(b, "instance-credentials-status")
    # Actions -> Instance settings -> Modify instance metadata options: optional.
    el(b, "#actions summary").click()
    click(b, "#modify-metadata-options")
    Select(el(b, "#http-tokens")).select_by_value("optional")
    click(b, "#save-metadata")
    assert text(b, "#http-tokens-value") == "optional"
    status, _, _ = keycard.imds(inst, creds_path)
    assert status == 200
    b.refresh()
    assert "IMDSv1" in text(b, "#credentials-status tr[data-delivery='ImdsV1']")


# ------------------------------------------------------------------ S3


def test_s3_upload_then_download_the_same_bytes_with_hostile_keys(b, keycard, tmp_path):
    s3 = keycard.client("s3")
    bucket = unique("console-bucket").lower()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="docs/readme.txt", Body=b"hi")
    data = os.urandom(200_000) + b"\r\n--boundary\r\n" + bytes(range(256))
    f = tmp_path / "blob.bin"
    f.write_bytes(data)
    hostile = "<script>alert(1)<img src=x onerror=alert(2)>.bin"
    sign_in_root(b, keycard)
    b.get(keycard.endpoint + "/console/s3")
    click(b, f"a[href='/console/s3/{bucket}']")
    click(b, "#objects tr.folder a")
    el(b, "#upload-file").send_keys(str(f))
    fill(b, {"#upload-key": hostile})
    click(b, "#upload-submit")
    assert "Upload succeeded" in text(b, "#flash")
    assert foreign_scripts(b) == [] and b.find_elements(*by("img")) == []
    assert hostile in text(b, "#objects")
    shot(b, "s3-objects")
    key = "docs/" + hostile
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    link = el(b, "#objects tr.object a[href*='onerror']").get_attribute("href")
    status, h, body = raw_http("GET", link, headers={"Cookie": f"keycard_console={session_cookie(b)}"})
    assert status == 200 and body == data
    assert h["content-type"] == "application/octet-stream" and h["content-disposition"].startswith("attachment")
    # Declared past the upload limit (16 MiB): 413 before the body is read, nothing stored.
    status, _, _ = raw_http(
        "POST",
        f"{keycard.endpoint}/console/s3/{bucket}/upload",
        body=b"--XyZ\r\n",
        headers={
            "Cookie": f"keycard_console={session_cookie(b)}",
            "Content-Type": "multipart/form-data; boundary=XyZ",
            "Content-Length": str(17 << 20),
        },
    )
    assert status == 413
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == sorted(["docs/readme.txt", key])
    # A missing key: S3's error, rendered as a page (not a stream).
    missing = f"{keycard.endpoint}/console/s3/{bucket}/object?key=" + urllib.parse.quote("docs/<nope>")
    status, h, body = raw_http("GET", missing, headers={"Cookie": f"keycard_console={session_cookie(b)}"})
    assert status == 404 and b"NoSuchKey" in body and b"&lt;nope&gt;" in body and h["content-type"].startswith("text/html")


# ------------------------------------------------------------------ posture


def test_posture_dashboard_matches_the_governance_report(browser, make_keycard):
    # Three days on the test clock, a KPI moving each day: the trend has three points.
    kc = make_keycard("--test-clock")
    kc.run_instance()
    kc.admin_get(f"/_keycard/admin/governance/posture?account={ACCOUNT}")
    advance_clock(kc, 86400)
    _, prof = kc.instance_profile()
    kc.run_instance(profile=prof["InstanceProfileName"])
    kc.admin_get(f"/_keycard/admin/governance/posture?account={ACCOUNT}")
    advance_clock(kc, 86400)
    kc.new_user()
    browser.get(kc.endpoint + "/console/signin")
    browser.delete_all_cookies()
    sign_in_root(browser, kc)
    b = browser
    b.get(kc.endpoint + "/console/posture")
    el(b, "#kpis")
    report = kc.admin_get(f"/_keycard/admin/governance/posture?account={ACCOUNT}")
    today = report["trend"][-1]
    assert len(report["trend"]) == 3
    assert text(b, "div.kpi[data-kpi='pctInstancesWithRole'] .kpi-value") == f"{today['pctInstancesWithRole']:.1f}%"
    for k in ("activeLongTermKeys", "exposedCredentialFindings", "openFindings"):
        assert text(b, f"div.kpi[data-kpi='{k}'] .kpi-value") == str(today[k]), k
    assert len(b.find_elements(*by("div.kpi svg polyline"))) == 4
    assert len(b.find_elements(*by("div.kpi[data-kpi='pctInstancesWithRole'] svg circle"))) == 3
    rules = {f["rule"] for f in report["findings"]}
    shown = {r.get_attribute("data-rule") for r in b.find_elements(*by("#findings tbody tr"))}
    assert rules == shown and rules, rules
    assert all(td.text for td in b.find_elements(*by("#findings tbody tr td:last-child")))
    shot(b, "posture")
    # The report is the account's: an IAM user is told to sign in as root.
    b.delete_all_cookies()
    sign_in(b, kc, console_user(kc, managed=[IAM_READ_ONLY]), PASSWORD)
    b.get(kc.endpoint + "/console/posture")
    assert "root user" in text(b, "#error")
