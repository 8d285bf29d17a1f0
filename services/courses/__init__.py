"""Online course review (线上培训过程管理): providers' courses and question banks checked and
reviewed, reuse and copyright conflicts found, providers sanctioned, cheating handled, item
statistics kept live, and courses rated and ranked."""
from services.common.spec import ServiceSpec

SPEC = ServiceSpec(
    name="courses",
    proto="vocreg.courses.v1.CourseReviewService",
    service_class="CourseReviewService",
    aggregates=("CourseRecord", "CourseProvider", "TraineeLearning", "CheatingCase",
                "EmployerStanding", "CourseRating"),
    metrics_port=9106,
    summary="online course review: completeness, question banks, reuse, copyright, cheating",
)
