"""Made-up people, time zones, scheduling links and notes that simulated events draw from.

Every address is on example.com, example.org or example.net, and every person is invented.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Person:
    """A booker or a host, with the address Reclaim would report."""

    name: str
    email: str


@dataclass(frozen=True)
class Host:
    """A Reclaim user who owns scheduling links. ``user_id`` appears only in observed payloads."""

    name: str
    email: str
    user_id: str


@dataclass(frozen=True)
class Zone:
    """The ``attendee_zone_id`` object of observed payloads, keyed by an IANA zone name."""

    id: str
    display_name: str
    abbreviation: str


@dataclass(frozen=True)
class LinkTemplate:
    """Title, description and meeting length of a scheduling link."""

    title: str
    description: str
    duration_minutes: int


HOSTS = (
    Host("Hal Host", "hal@example.com", "7e3a91c0"),
    Host("Mira Lindqvist", "mira@example.com", "2b9f04d7"),
    Host("Omar Farouk", "omar@example.com", "c41e8a65"),
)

ASCII_BOOKERS = (
    Person("Priya Raman", "priya.raman@example.org"),
    Person("Liam Becker", "liam.becker@example.net"),
    Person("Amara Okafor", "amara.okafor@example.org"),
    Person("Noor Haddad", "noor.haddad@example.net"),
    Person("Yuki Tanaka", "yuki.tanaka@example.org"),
    Person("Daniel Whitford", "dan.whitford@example.net"),
    Person("Sofia Marin", "sofia.marin@example.org"),
    Person("Kwame Mensah", "kwame.mensah@example.net"),
)

NON_ASCII_BOOKERS = (
    Person("Zoë Ångström", "zoe.angstrom@example.org"),
    Person("José Núñez", "jose.nunez@example.net"),
    Person("Łucja Żelazna", "lucja.zelazna@example.org"),
    Person("Björn Nyqvist", "bjorn.nyqvist@example.net"),
    Person("Renée Dufresne", "renee.dufresne@example.org"),
    Person("Çağla Yıldız", "cagla.yildiz@example.net"),
    Person("陈晓明", "xiaoming.chen@example.org"),
    Person("Ōta Haruka", "haruka.ota@example.net"),
)

# Display names and abbreviations follow the captured Europe/Prague entry, which keeps
# "CET" in summer. Reclaim's values for the other zones are assumptions.
ZONES = (
    Zone("Europe/Prague", "Central European Time", "CET"),
    Zone("Europe/London", "Greenwich Mean Time", "GMT"),
    Zone("America/New_York", "Eastern Time", "ET"),
    Zone("America/Los_Angeles", "Pacific Time", "PT"),
    Zone("America/Sao_Paulo", "Brasilia Time", "BRT"),
    Zone("Asia/Kolkata", "India Standard Time", "IST"),
    Zone("Asia/Tokyo", "Japan Standard Time", "JST"),
    Zone("Australia/Sydney", "Australian Eastern Time", "AET"),
)

# The deep-dive description is long on purpose, because the description is sent in every event.
LINKS = (
    LinkTemplate("30-min Product Demo", "Walk through the product with our team.", 30),
    LinkTemplate("Office hours", "Bring one question.\n\nPaste your reference into the booking note.", 30),
    LinkTemplate("Intro call", "A quick hello to see whether we are a fit.", 15),
    LinkTemplate(
        "Technical deep dive",
        "\n\n".join(
            [
                "A working session with one of our engineers about your integration.",
                "Before the call, please collect: the version you run, the error messages you "
                "see (copied as text, not screenshots), the time zone of your servers, and "
                "whether the problem appears in every environment or only in production.",
                "We will look at logs together, so have access to them ready. If your company "
                "requires an NDA before sharing configuration, tell us in the booking note and "
                "we will send ours ahead of the meeting.",
                "Agenda: 5 minutes of context, 40 minutes of hands-on debugging, 15 minutes of "
                "next steps. We write a short summary afterwards and send it to everyone on "
                "the invitation, including the people you add as CCs.",
                "Grüße from the integrations team — à bientôt!",
            ]
        ),
        60,
    ),
    LinkTemplate("Onboarding session", "Set up your workspace with a specialist.", 45),
    LinkTemplate("Quarterly review", "Review usage, goals and open requests.", 60),
)

MESSAGES = (
    "Looking forward to it.",
    "",
    "Could we also cover pricing for teams?",
    "Je me réjouis de notre échange.",
    "I'll join from my phone, so the camera may be off.",
    "Reference: INV-2291",
    "Danke für die schnelle Terminvergabe!",
)

CANCELLATION_MESSAGES = (
    "Something came up, sorry.",
    "Double-booked, I'll rebook next week.",
    "",
    "Kollision im Kalender – bitte entschuldigen Sie.",
)

CC_ADDRESSES = (
    "assistant@example.org",
    "team-lead@example.net",
    "procurement@example.com",
)

CONFERENCE_LOCATION = {"conference_location": "GOOGLE_MEET"}
