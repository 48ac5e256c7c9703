"""age recipients and identities parsed from settings, labelled for `list`, and their problems worded
without ever quoting a private key (pure functions; keys made by pyrage in memory)."""

from __future__ import annotations

import pyrage
import pytest

from backup_svc.crypto.keys import BadKey, load_identities, matching_recipients, parse_recipients
from backup_svc.crypto.labels import LABEL_BUDGET, describe, recipients_metadata, short_label
from backup_svc.crypto.settings import encryption_settings

# A real ssh-ed25519 public key (its private half is not needed here).
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP9JGUgO6VLGxfoAebGuXIJx5TfwzuI9LNjTJBUOROlE me@laptop"


def age_pair() -> tuple[str, str]:
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def test_recipients_split_on_commas_and_newlines_skip_comments_and_repeat_once():
    _, one = age_pair()
    _, two = age_pair()
    found = parse_recipients(f"{one}, {ED25519}\n# the offline key\n{two}\n\n{one}")
    assert [r.kind for r in found] == ["age", "ssh-ed25519", "age"]
    assert found[1].text == " ".join(ED25519.split()[:2])  # the comment is not part of the key
    assert found[1].label == "ssh-ed25519 SHA256:IO87GElXQh2ooE5AoNMHFH4vPrNpQrSvKjVGd3D8vbM"  # as ssh-keygen -l


@pytest.mark.parametrize(
    "bad, says",
    [
        ("age1qqqq", "is not a valid age recipient"),
        ("ssh-ed25519 AAAAnot-base64", "is not a valid ssh-ed25519 public key"),
        ("ssh-dss AAAAB3NzaC1kc3M", "neither an age recipient"),
        ("hello", "neither an age recipient"),
    ],
)
def test_a_malformed_recipient_is_named(bad, says):
    with pytest.raises(BadKey, match=says) as refused:
        parse_recipients(bad)
    assert bad[:8] in str(refused.value)


def test_a_private_key_put_among_the_recipients_is_refused_without_being_quoted():
    secret, _ = age_pair()
    problems: list[str] = []
    encryption_settings({"BACKUP_AGE_RECIPIENTS": secret}, problems)
    (problem,) = problems
    assert problem.startswith("BACKUP_AGE_RECIPIENTS: holds a private key") and secret not in problem
    assert secret[15:] not in problem


def test_an_identity_is_a_value_or_a_file_of_several_keys(tmp_path):
    first, first_public = age_pair()
    second, second_public = age_pair()
    assert len(load_identities(first)) == 1
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# created: today\n# public key: {first_public}\n{first}\n\n{second}\n")
    identities = load_identities(str(keys))
    assert len(identities) == 2 and first not in repr(identities)
    recipients = parse_recipients(f"{first_public},{second_public},{age_pair()[1]}")
    assert matching_recipients(identities, recipients) == recipients[:2]


@pytest.mark.parametrize(
    "value, says",
    [
        ("AGE-SECRET-KEY-1NOTAKEY", "line 1 is not an age secret key"),
        ("/nonexistent/key.txt", "'/nonexistent/key.txt': No such file or directory"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nbroken\n-----END OPENSSH PRIVATE KEY-----", "cannot be read"),
    ],
)
def test_an_unusable_identity_is_one_line_that_never_quotes_the_value(value, says):
    problems: list[str] = []
    settings = encryption_settings({"BACKUP_AGE_IDENTITY": value}, problems)
    (problem,) = problems
    assert problem.startswith("BACKUP_AGE_IDENTITY ") and says in problem
    assert settings.identities == ()
    assert "NOTAKEY" not in problem and "broken" not in problem


def test_labels_for_list_and_metadata_fit_the_budget():
    _, public = age_pair()
    assert short_label(public) == f"{public[:9]}…{public[-6:]}"
    many = parse_recipients(",".join(age_pair()[1] for _ in range(30)))
    meta = recipients_metadata(many)
    assert meta["encryption"] == "age" and len(meta["age-recipients"]) <= LABEL_BUDGET + 20
    assert meta["age-recipients"].endswith("more")
    assert describe("db_backup_20260101_000000.sql.gz", {}) == "plain"
    assert describe("db_backup_20260101_000000.sql.gz.age", {}) == "age (recipients not recorded)"
    assert describe("x.sql.gz.age", {"encryption": "age", "age-recipients": public}).startswith("age → age1")
